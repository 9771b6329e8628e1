"""train.py end to end: a short real training, bad input, interruption, resumption, reproducibility."""

import csv
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, own_stderr_lines
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import run_bookkeeping
from evaluate_func import load_saved_model, predict_digit_and_sum, read_metadata

pytestmark = pytest.mark.slow


def run_train(*args, timeout=300):
    """Run train.py in a fresh process; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def history_epochs(path):
    with open(path, newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_every_planned_epoch_runs_and_the_best_one_is_kept(mnist, tmp_path, monkeypatch):
    """Shuffled validation labels: the validation loss can only worsen as the model learns. The run still
    goes through all its epochs (no early stopping), and the model it returns is the best epoch's
    averaged weights: its validation loss is the first epoch's, not the last one's."""
    import data_creation
    import train

    real_split = data_creation.train_validation_split

    def split_with_meaningless_validation_labels(images, digits, validation_size, seed):
        train_split, (x_val, y_val) = real_split(images, digits, validation_size, seed)
        return train_split, (x_val, np.random.default_rng(seed).permutation(y_val))

    monkeypatch.setattr(data_creation, "train_validation_split", split_with_meaningless_validation_labels)
    monkeypatch.setattr(train, "QUICK", {**train.QUICK, "train_images": 1_280, "validation_images": 500})
    model, results = train.train_model(epochs=6, work_dir=tmp_path, quick=True, verbose=0)
    log = run_bookkeeping.read_log(tmp_path / train.HISTORY_FILE)
    validation_loss = [row["val_loss"] for row in log]
    assert min(validation_loss[1:]) > validation_loss[0]  # it never improved on the first epoch
    assert [row["epoch"] for row in log] == list(range(6)) and results["epochs_run"] == 6

    _, (x_val, y_val), _ = train.split_mnist(mnist, train.SEED, quick=True)
    kept = model.evaluate(train.evaluation_data(x_val, y_val, train.SEED, "validation"), return_dict=True, verbose=0)
    assert kept["loss"] == pytest.approx(validation_loss[0], rel=1e-4)


def test_short_real_training_learns_both_heads(mnist, tmp_path):
    """5,000 MNIST images, 3 epochs: the loss falls every epoch and both heads end far above chance (10%);
    the live weights' validation shows the progress from the first epoch, the average's lags behind; the
    metadata tells what the run did and the saved model gives the test accuracies it records."""
    import train

    assert train.main(["--quick", "--epochs", "3", "--seed", "3", "--output-dir", str(tmp_path)]) == 0
    metadata, settings = read_metadata(tmp_path / "model.zip"), read_metadata(tmp_path / "model.zip")["settings"]
    assert metadata["seed"] == 3 and metadata["epochs_requested"] == metadata["epochs_run"] == 3
    assert metadata["test_images"] == 2000 and settings["quick"] is True
    assert settings["augmentation"] == train.AUGMENTATION and settings["augmented_epochs"] == 2  # epoch 3: plain
    assert settings["sum_head"] == "outer_product" and settings["withheld_pairs"] is None
    assert (settings["train_images"], settings["validation_images"]) == (5_000, 1_000)
    model = load_saved_model(tmp_path / "model.zip")  # the SHA-256 check passes
    _, _, (x_test, y_test) = train.split_mnist(mnist, 3, quick=True)
    addends = train.evaluation_data(x_test, y_test, 3, "test").addends
    predicted = predict_digit_and_sum(model, x_test, addends)
    assert metadata["test_digit_accuracy"] == pytest.approx(np.mean(predicted["digit"] == y_test), abs=1e-6)
    assert metadata["test_sum_accuracy"] == pytest.approx(np.mean(predicted["sum"] == y_test + addends), abs=1e-6)
    assert metadata["test_digit_accuracy"] >= 0.90 and metadata["test_sum_accuracy"] >= 0.60
    log = run_bookkeeping.read_log(tmp_path / "training_history.log")
    assert [row["epoch"] for row in log] == [0, 1, 2]
    losses = [row["loss"] for row in log]
    assert losses[0] > losses[1] > losses[2]
    assert log[0]["val_live_digit_accuracy"] >= 0.8 > log[0]["val_digit_accuracy"]
    assert metadata["training_seconds"] == pytest.approx(sum(row["epoch_seconds"] for row in log), abs=0.1)
    assert metadata["machine"]["instruction_set"] in ("avx512f", "avx2", "avx", "aarch64", "arm64", "x86_64")
    assert model.name == "mnist_digit_sum"
    # trained in bfloat16 where the CPU has the units; saved computing in float32 on any CPU
    assert metadata["machine"]["bfloat16_units"] == (settings["precision"] == "mixed_bfloat16")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    for split in ("train", "validation"):  # TensorBoard's logs, one point per epoch
        events = EventAccumulator(str(tmp_path / "checkpoints" / "tensorboard" / split)).Reload()
        assert [event.step for event in events.Tensors("epoch_loss")] == [0, 1, 2]


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


def test_unwritable_output_directory_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_train("--quick", "--output-dir", str(blocker / "out"))
    assert result.returncode == 2 and "not writable" in result.stderr


KILLED_AFTER_SECOND_EPOCH = """
import os, signal, sys
import train

def with_a_kill_after_the_second_epoch(*args, **kwargs):
    import keras

    def kill(epoch, logs):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    return [*fresh_callbacks(*args, **kwargs), keras.callbacks.LambdaCallback(on_epoch_end=kill)]

fresh_callbacks, train.training_callbacks = train.training_callbacks, with_a_kill_after_the_second_epoch
sys.exit(train.main(sys.argv[1:]))
"""


def test_killed_run_resumes_exactly_where_it_stopped(mnist, tmp_path):
    """Killed (SIGKILL, by a callback after all of train.py's own) at the end of its second of four epochs and
    resumed, a run ends with the uninterrupted run's weights, bit for bit on one machine; its log has every
    epoch once and its metadata describes the whole run."""
    sentinel = b"the previous, good model"
    (tmp_path / "model.zip").write_bytes(sentinel)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_SECOND_EPOCH, "--quick", "--epochs", "4", "--output-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    finished = len(history_epochs(tmp_path / "checkpoints" / "training_history.log"))
    assert finished == 2
    assert (tmp_path / "model.zip").read_bytes() == sentinel  # the killed run replaced nothing

    result = run_train("--quick", "--epochs", "4", "--output-dir", str(tmp_path), "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    assert history_epochs(tmp_path / "training_history.log") == [0, 1, 2, 3]  # no epoch trained twice
    resumed = read_metadata(tmp_path / "model.zip")
    assert resumed["epochs_run"] == 4 and resumed["resumed_at_epoch"] == finished
    with open(tmp_path / "training_history.log", newline="") as handle:
        seconds = [float(row["epoch_seconds"]) for row in csv.DictReader(handle)]
    assert resumed["training_seconds"] == pytest.approx(sum(seconds), abs=0.1)  # all four epochs

    uninterrupted_dir = tmp_path / "uninterrupted"
    assert run_train("--quick", "--epochs", "4", "--output-dir", str(uninterrupted_dir)).returncode == 0
    assert read_metadata(uninterrupted_dir / "model.zip")["resumed_at_epoch"] is None
    weights = [load_saved_model(path / "model.zip").get_weights() for path in (tmp_path, uninterrupted_dir)]
    for resumed_weights, uninterrupted_weights in zip(*weights, strict=True):
        np.testing.assert_array_equal(resumed_weights, uninterrupted_weights)


def test_same_seed_same_weights_on_cpu(mnist, tmp_path, monkeypatch):
    """Two short trainings with one seed (1,280 images, one epoch) end with identical weights; another seed
    differs.

    This holds on one machine: oneDNN picks its kernels by the CPU's instruction set (AVX2, AVX-512), so
    the same seed gives other weights on a CPU of another family (model.zip's metadata records it)."""
    import train

    monkeypatch.setattr(train, "QUICK", {**train.QUICK, "train_images": 1_280, "validation_images": 500})

    def weights(seed, run):
        model, _ = train.train_model(epochs=1, quick=True, seed=seed, work_dir=tmp_path / run, verbose=0)
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
model, results = train.train_model(epochs=1, quick=True, strategy="mirrored",
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
