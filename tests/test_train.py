"""train.py end to end: a short real training, bad input, interruption, resumption, reproducibility."""

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, own_stderr_lines

from evaluate_func import load_saved_model, read_metadata

pytestmark = pytest.mark.slow


def run_train(*args, timeout=300):
    """Run train.py in a fresh process; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def history_epochs(path):
    with open(path, newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_weight_average_horizon_is_capped_by_the_run_length():
    import train

    assert train.ema_momentum(1_000, 100) == pytest.approx(1 - 1 / train.EMA_STEPS)  # a long run
    assert train.ema_momentum(40, 2) == pytest.approx(1 - 1 / 16)  # --quick: a fifth of its 80 steps
    assert train.ema_momentum(1, 1) == 0.0  # a single step: no averaging at all


def test_the_last_epochs_train_on_unaugmented_images(digit_images):
    import train

    images, digits = digit_images
    assert train.training_data(images, digits, 8, train.EPOCHS, seed=0).augment_epochs == train.EPOCHS - 2
    assert train.training_data(images, digits, 8, 2, seed=0).augment_epochs == 1  # at most half the run
    assert train.training_data(images, digits, 8, 1, seed=0).augment_epochs == 1


def test_every_planned_epoch_runs_when_validation_stops_improving(mnist, tmp_path, monkeypatch):
    """Shuffled validation labels: the validation loss can only worsen as the model learns, and the run
    still goes through its lowest learning rates and unaugmented last epochs (no early stopping)."""
    import data_creation
    import train

    real_split = data_creation.train_validation_split

    def split_with_meaningless_validation_labels(images, digits, seed=0):
        train_split, (x_val, y_val) = real_split(images, digits, seed=seed)
        return train_split, (x_val, np.random.default_rng(seed).permutation(y_val))

    monkeypatch.setattr(data_creation, "train_validation_split", split_with_meaningless_validation_labels)
    monkeypatch.setattr(train, "QUICK", {**train.QUICK, "train_images": 1_280, "validation_images": 500})
    _, history, results = train.train_model(epochs=10, work_dir=tmp_path, quick=True, verbose=0)
    validation_loss = history.history["val_loss"]
    assert min(validation_loss[1:]) >= validation_loss[0]  # it never improved on the first epoch
    assert history.epoch == list(range(10)) and results["epochs_run"] == 10


def test_short_real_training_learns_both_heads(mnist, tmp_path):
    """5,000 MNIST images, 3 epochs: the floor is 90% digit / 85% sum on 2,000 test images."""
    from train import main

    assert main(["--quick", "--epochs", "3", "--output-dir", str(tmp_path)]) == 0
    metadata = read_metadata(tmp_path / "model.zip")
    assert metadata["test_images"] == 2000 and metadata["settings"]["quick"] is True
    assert metadata["settings"]["augmented_epochs"] == 2  # the third epoch sees plain images
    assert metadata["test_digit_accuracy"] >= 0.90
    assert metadata["test_sum_accuracy"] >= 0.85
    assert history_epochs(tmp_path / "training_history.log") == [0, 1, 2]
    model = load_saved_model(tmp_path / "model.zip")  # the SHA-256 check passes
    assert model.name == "mnist_digit_sum"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "not a positive integer"),
        (["--batch-size", "x"], "not an integer"),
        (["--strategy", "tpu"], "invalid choice"),
    ],
)
def test_bad_options_exit_2_with_one_line(args, message):
    result = run_train(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_bad_data_exits_2_and_keeps_saved_files(tmp_path):
    saved = {name: f"previous {name}".encode() for name in ("model.zip", "training_history.log")}
    for name, content in saved.items():
        (tmp_path / name).write_bytes(content)
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((2, 28, 28), np.uint8))
    result = run_train("--quick", "--data", str(bad), "--output-dir", str(tmp_path))
    assert result.returncode == 2
    assert "lacks the key" in result.stderr and "Traceback" not in result.stderr
    assert len(own_stderr_lines(result.stderr)) == 1
    for name, content in saved.items():
        assert (tmp_path / name).read_bytes() == content


def test_no_data_and_no_network_exits_2_with_advice(tmp_path, offline, capsys):
    from train import main

    assert main(["--quick", "--output-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "could not be downloaded" in error and "--data" in error
    assert not (tmp_path / "model.zip").exists()


def test_unwritable_output_directory_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_train("--quick", "--output-dir", str(blocker / "out"))
    assert result.returncode == 2 and "not writable" in result.stderr


def test_killed_run_resumes_and_keeps_saved_model(mnist, tmp_path):
    sentinel = b"the previous, good model"
    (tmp_path / "model.zip").write_bytes(sentinel)
    args = [sys.executable, str(ROOT / "train.py"), "--quick", "--epochs", "4", "--output-dir", str(tmp_path)]
    log = tmp_path / "checkpoints" / "training_history.log"
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (log.exists() and len(history_epochs(log)) >= 2):
        time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(history_epochs(log)) >= 2, "the run was killed before two epochs finished"
    assert (tmp_path / "model.zip").read_bytes() == sentinel  # the killed run replaced nothing

    result = run_train("--quick", "--epochs", "4", "--output-dir", str(tmp_path), "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    epochs = history_epochs(tmp_path / "training_history.log")
    assert epochs[:2] == [0, 1] and epochs[-1] == 3  # appended, not truncated
    assert sorted(set(epochs)) == [0, 1, 2, 3]
    resumed = read_metadata(tmp_path / "model.zip")
    assert resumed["epochs_requested"] == 4

    uninterrupted_dir = tmp_path / "uninterrupted"
    assert run_train("--quick", "--epochs", "4", "--output-dir", str(uninterrupted_dir)).returncode == 0
    uninterrupted = read_metadata(uninterrupted_dir / "model.zip")
    for head in ("test_digit_accuracy", "test_sum_accuracy"):
        assert abs(resumed[head] - uninterrupted[head]) <= 0.02, (head, resumed[head], uninterrupted[head])


def test_same_seed_same_weights_on_cpu(mnist, tmp_path):
    """Two short trainings with one seed end with identical weights; another seed differs."""
    from train import train_model

    def weights(seed, run):
        model, _, _ = train_model(epochs=1, quick=True, seed=seed, work_dir=tmp_path / run, verbose=0)
        return model.get_weights()

    first, second, other = weights(7, "first"), weights(7, "second"), weights(8, "other")
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(first, other, strict=True))


def test_mirrored_strategy_on_two_logical_cpus(mnist, tmp_path):
    """MirroredStrategy over two logical CPU devices trains one quick epoch (a stand-in for two GPUs)."""
    script = f"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import train
model, history, results = train.train_model(epochs=1, quick=True, strategy="mirrored",
                                            work_dir={str(tmp_path)!r}, verbose=0)
import tensorflow as tf
print("replicas", tf.distribute.get_strategy().num_replicas_in_sync, model.distribute_strategy.num_replicas_in_sync)
print("accuracy", results["test_digit_accuracy"])
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replicas 1 2" in result.stdout
    accuracy = float(result.stdout.split("accuracy")[1])
    assert accuracy > 0.5
