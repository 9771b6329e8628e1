"""train.py's parts, each without a real training (fast enough for `make mutants`): the schedule, the weight
average, augmentation by epoch, a fresh run against a resumed one, Ctrl-C, missing data and all-or-none saving."""

import os

import numpy as np
import pytest

import run_bookkeeping


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


def test_the_recipes_width_precision_smoothing_and_warm_up_reach_the_model(monkeypatch):
    import keras

    import train
    from network_architecture import AdamWWithEMAWarmup

    plain = train.recipe_model(100, 4)
    assert plain.get_layer("conv1_conv").filters == 16 and plain.get_layer("conv2_conv").compute_dtype == "float32"
    assert type(plain.optimizer) is keras.optimizers.AdamW
    for name, value in dict(WIDTH=1.5, LABEL_SMOOTHING=0.1, EMA_WARMUP=True).items():
        monkeypatch.setattr(train, name, value)
    changed = train.recipe_model(100, 4, precision="mixed_bfloat16")
    assert changed.get_layer("conv1_conv").filters == 24 and changed.get_layer("conv2_conv").compute_dtype == "bfloat16"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is put back
    assert type(changed.optimizer) is AdamWWithEMAWarmup
    assert {head: loss.label_smoothing for head, loss in changed.loss.items()} == {"digit": 0.1, "sum": 0.1}


def test_the_fastest_precision_is_bfloat16_only_on_a_cpu_with_bfloat16_units(monkeypatch):
    import keras

    import run_bookkeeping

    for units, expected in ((True, "mixed_bfloat16"), (False, "float32")):
        monkeypatch.setattr(run_bookkeeping, "describe_cpu", lambda units=units: {"bfloat16_units": units})
        assert run_bookkeeping.fastest_precision() == expected
    monkeypatch.setattr(keras.distribution, "list_devices", lambda device_type=None: ["gpu:0"])
    assert run_bookkeeping.fastest_precision() == "float32"  # a GPU trains: the CPU's units do not matter


def test_learning_rate_warms_up_linearly_then_decays_to_zero():
    import train

    schedule = train.learning_rate_schedule(steps_per_epoch=100, epochs=train.EPOCHS)
    warmup = train.WARMUP_EPOCHS * 100
    rate = [float(schedule(step)) for step in (0, warmup // 2, warmup, warmup + 1, train.EPOCHS * 100)]
    assert rate[0] == 0 and rate[1] == pytest.approx(train.PEAK_LEARNING_RATE / 2)
    assert rate[2] == pytest.approx(train.PEAK_LEARNING_RATE) and rate[2] > rate[3] > rate[4]
    assert rate[4] == pytest.approx(0, abs=1e-9)
    short = train.learning_rate_schedule(steps_per_epoch=10, epochs=2)  # warm-up: at most a quarter of the run
    assert float(short(5)) == pytest.approx(train.PEAK_LEARNING_RATE)
    assert float(short(2)) < float(short(5)) and float(short(6)) < float(short(5))


def test_augmented_epochs_warp_the_images_and_the_last_ones_do_not(digit_images):
    """Epoch 0's batch differs from the same batch without augmentation; the last epoch's equals it."""
    import train
    from data_creation import MnistSumDataset

    images, digits = digit_images
    augmented = train.training_data(images, digits, 8, train.EPOCHS, seed=0)
    plain = MnistSumDataset(images, digits, 8, seed=0)
    for epoch, warped in ((0, True), (augmented.augment_epochs - 1, True), (augmented.augment_epochs, False)):
        augmented.set_epoch(epoch)
        plain.set_epoch(epoch)
        (augmented_inputs, augmented_targets), (plain_inputs, plain_targets) = augmented[0], plain[0]
        np.testing.assert_array_equal(augmented_targets["sum"], plain_targets["sum"])  # the same batch
        assert np.array_equal(augmented_inputs["image"], plain_inputs["image"]) != warped


def callbacks_by_class(callbacks):
    return {type(callback).__name__: callback for callback in callbacks}


def write_backup_and_log(work_dir, val_losses):
    """What an interrupted run leaves in its work directory: a backup, TensorBoard logs and a CSV log."""
    import train

    (work_dir / "backup").mkdir(parents=True)
    (work_dir / "backup" / "training_metadata.json").write_text("{}")
    (work_dir / train.TENSORBOARD_DIR / "train").mkdir(parents=True)
    rows = ["epoch,val_loss"] + [f"{epoch},{loss}" for epoch, loss in enumerate(val_losses)]
    (work_dir / train.HISTORY_FILE).write_text("\n".join(rows) + "\n")


def test_a_fresh_run_after_an_interrupted_one_starts_fresh(digit_images, tmp_path, untrained_model):
    """No backup to resume, no old TensorBoard logs, a new CSV log, and a first epoch kept as the best even
    when it is worse than the interrupted run's best."""
    import train

    images, digits = digit_images
    write_backup_and_log(tmp_path, [0.5, 0.3, 0.4])
    data = train.training_data(images, digits, 8, 4, seed=0), train.evaluation_data(images, digits, 0, "validation")
    callbacks = callbacks_by_class(train.training_callbacks(tmp_path, *data, resume=False))
    assert not (tmp_path / "backup").exists() and not (tmp_path / train.TENSORBOARD_DIR).exists()
    assert "LiveWeightsSwappedBack" not in callbacks
    assert callbacks["CSVLogger"].append is False
    callbacks["ModelCheckpoint"].set_model(untrained_model)
    callbacks["ModelCheckpoint"].on_epoch_end(0, {"val_loss": 0.9})
    assert (tmp_path / train.BEST_FILE).exists()


def test_a_resumed_run_keeps_its_best_checkpoint_until_an_epoch_beats_it(digit_images, tmp_path, untrained_model):
    """The best epoch before the interruption had validation loss 0.3: a resumed epoch at 0.35 leaves
    best.keras alone, one at 0.25 replaces it."""
    import train

    images, digits = digit_images
    write_backup_and_log(tmp_path, [0.5, 0.3, 0.4])
    data = train.training_data(images, digits, 8, 6, seed=0), train.evaluation_data(images, digits, 0, "validation")
    callbacks = callbacks_by_class(train.training_callbacks(tmp_path, *data, resume=True))
    assert (tmp_path / "backup" / "training_metadata.json").exists() and "LiveWeightsSwappedBack" in callbacks
    assert callbacks["CSVLogger"].append is True
    checkpoint, best = callbacks["ModelCheckpoint"], tmp_path / train.BEST_FILE
    checkpoint.set_model(untrained_model)
    checkpoint.on_epoch_end(3, {"val_loss": 0.35})
    assert not best.exists()
    checkpoint.on_epoch_end(4, {"val_loss": 0.25})
    assert best.exists()


def test_ctrl_c_exits_130_and_replaces_nothing(tmp_path, monkeypatch, capsys):
    import train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    (tmp_path / "model.zip").write_bytes(b"the previous, good model")
    monkeypatch.setattr(train, "train_model", interrupted)
    assert train.main(["--quick", "--output-dir", str(tmp_path)]) == 130
    assert "interrupted; nothing saved was replaced" in capsys.readouterr().err
    assert (tmp_path / "model.zip").read_bytes() == b"the previous, good model"


def test_no_data_and_no_network_exits_2_with_advice(tmp_path, offline, capsys):
    from train import main

    assert main(["--quick", "--output-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "could not be downloaded" in error and "--data" in error
    assert not (tmp_path / "model.zip").exists()


def test_results_are_replaced_all_or_none(tmp_path, monkeypatch):
    """A move that fails half-way puts the previous files back and leaves the new ones staged."""
    staging, output = tmp_path / "staging", tmp_path / "output"
    staging.mkdir()
    output.mkdir()
    names = ["model.zip", "training_history.log", "model_plot.png"]
    for name in names:
        (staging / name).write_text(f"new {name}")
        (output / name).write_text(f"old {name}")
    real_replace = os.replace

    def replace_failing_on_the_log(source, target):
        if str(source) == str(staging / "training_history.log"):
            raise OSError("disk full")
        real_replace(source, target)

    monkeypatch.setattr(run_bookkeeping.os, "replace", replace_failing_on_the_log)
    with pytest.raises(OSError, match="disk full"):
        run_bookkeeping.replace_all_or_none(names, staging, output)
    assert {name: (output / name).read_text() for name in names} == {name: f"old {name}" for name in names}
    assert {name: (staging / name).read_text() for name in names} == {name: f"new {name}" for name in names}

    monkeypatch.setattr(run_bookkeeping.os, "replace", real_replace)
    run_bookkeeping.replace_all_or_none(names, staging, output)
    assert {name: (output / name).read_text() for name in names} == {name: f"new {name}" for name in names}
    assert sorted(path.name for path in output.iterdir()) == sorted(names)  # nothing set aside is left


def test_the_options_default_to_the_recipe_and_quick_changes_the_epochs_and_folder():
    import argparse
    from pathlib import Path

    import train
    from run_bookkeeping import positive_int

    full = train.parse_args([])
    assert (full.epochs, full.batch_size, full.seed, full.output_dir) == (train.EPOCHS, 128, train.SEED, Path("."))
    assert (full.quick, full.resume, full.strategy, full.data) == (False, False, "default", None)
    quick = train.parse_args(["--quick"])
    assert (quick.epochs, quick.output_dir) == (train.QUICK["epochs"], Path("runs/quick"))
    chosen = train.parse_args(["--quick", "--epochs", "5", "--output-dir", "elsewhere", "--seed", "-3"])
    assert (chosen.epochs, chosen.output_dir, chosen.seed) == (5, Path("elsewhere"), -3)
    assert positive_int("7") == 7
    for text, message in (("0", "0 is not a positive integer"), ("-2", "-2 is not"), ("x", "'x' is not an integer")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            positive_int(text)


def test_main_trains_with_the_options_given(tmp_path, monkeypatch):
    import train

    given = {}

    def record_and_stop(*args, **kwargs):
        given.update(args=args, kwargs=kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_model", record_and_stop)
    options = ["--epochs", "3", "--batch-size", "64", "--seed", "5", "--data", "d.npz", "--output-dir", str(tmp_path)]
    assert train.main([*options, "--resume"]) == 130
    assert given["args"] == ("d.npz", 3, 64, 5, tmp_path / "checkpoints")
    assert given["kwargs"] | {"verbose": None} == dict(quick=False, resume=True, strategy="default", verbose=None)
