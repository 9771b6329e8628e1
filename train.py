"""Train the digit-and-sum network and save model.zip, training_history.log and model_plot.png.

    python train.py                 # the full run (what `make train` does)
    python train.py --quick         # a small subset and 2 epochs, into runs/quick/
    python train.py --resume        # continue an interrupted run from its last finished epoch

Everything is written aside first (into OUTPUT_DIR/checkpoints/) and moved into
place only when the run has finished, so a failed or interrupted run never
replaces a saved model, log or plot.
"""

import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

EPOCHS = 18
BATCH_SIZE = 128
EVALUATION_BATCH_SIZE = 512  # validation and test batches (bench.py validates with the same)
SEED = 0
PEAK_LEARNING_RATE = 3e-3
WARMUP_EPOCHS = 1
CLEAN_EPOCHS = 2  # the last epochs train on the images as they are, like the test images (at most half the run)
EMA_STEPS = 2_000  # the weights are averaged over about this many steps (a fifth of the run at most)
QUICK = dict(train_images=5_000, validation_images=1_000, test_images=2_000, epochs=2)

HISTORY_FILE = "training_history.log"
PLOT_FILE = "model_plot.png"
ARCHIVE_FILE = "model.zip"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=positive_int, default=None, help=f"default {EPOCHS} ({QUICK['epochs']} with --quick)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--data", metavar="PATH", help="mnist.npz (default: $MNIST_NPZ, else Keras' download)")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: . (runs/quick with --quick)")
    parser.add_argument("--quick", action="store_true", help="a small subset and few epochs, for a look in a minute")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in OUTPUT_DIR")
    parser.add_argument(
        "--strategy",
        choices=("default", "mirrored"),
        default="default",
        help="mirrored: tf.distribute.MirroredStrategy over all visible GPUs",
    )
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (QUICK["epochs"] if args.quick else EPOCHS)
    args.output_dir = args.output_dir or Path("runs/quick" if args.quick else ".")
    return args


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def data_checksum(*arrays):
    """SHA-256 over the raw bytes of the arrays, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(array.tobytes())
    return digest.hexdigest()


def code_version():
    """The git commit of this checkout (with '+dirty' for uncommitted changes), or 'unknown'."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def distribution_scope(strategy):
    """The scope to build the model in: MirroredStrategy's, or a no-op for the default.

    MirroredStrategy replicates the model on every visible GPU (or, without
    GPUs, on every logical CPU device) and splits each batch between them.
    """
    if strategy == "mirrored":
        import tensorflow as tf

        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices]).scope()
    return contextlib.nullcontext()


def learning_rate_schedule(steps_per_epoch, epochs):
    """Linear warm-up to PEAK_LEARNING_RATE for WARMUP_EPOCHS (at most 1/4 of the run), then cosine decay."""
    import keras

    steps = epochs * steps_per_epoch
    warmup = min(WARMUP_EPOCHS * steps_per_epoch, steps // 4)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=steps - warmup, warmup_target=PEAK_LEARNING_RATE, warmup_steps=warmup
    )


def ema_momentum(steps_per_epoch, epochs):
    """The momentum of the weight average: a horizon of EMA_STEPS steps, cut to a fifth of a short run
    (the average starts from the untrained weights, which must have faded out by the end)."""
    return 1 - 1 / max(1.0, min(EMA_STEPS, epochs * steps_per_epoch / 5))


def training_data(images, digits, batch_size, epochs, seed):
    """The training batches for an `epochs`-epoch run: augmented, except in the last CLEAN_EPOCHS epochs
    (at most half the run), which fine-tune on the unaltered images."""
    from data_creation import MnistSumDataset

    augment_epochs = epochs - min(CLEAN_EPOCHS, epochs // 2)
    return MnistSumDataset(images, digits, batch_size, training=True, seed=seed, augment_epochs=augment_epochs)


def compiled_model(steps_per_epoch, epochs):
    """The network compiled as training uses it: the warm-up/cosine schedule and the weight average
    planned for `epochs` epochs of `steps_per_epoch` steps."""
    from network_architecture import build_model, compile_model

    return compile_model(
        build_model(),
        learning_rate=learning_rate_schedule(steps_per_epoch, epochs),
        ema_momentum=ema_momentum(steps_per_epoch, epochs),
    )


def train_model(
    data_path=None,
    epochs=EPOCHS,
    batch_size=BATCH_SIZE,
    seed=SEED,
    work_dir=Path("checkpoints"),
    quick=False,
    resume=False,
    strategy="default",
    verbose="auto",
):
    """Train from scratch (or resume) and return `(model, history, results)`.

    `results` holds the test accuracies and everything needed to reproduce the
    run. Validation, checkpoints and the returned model use the optimizer's
    moving average of the weights; the best epoch's (by validation loss) are
    restored at the end. Every planned epoch runs: there is no early stopping,
    which would cut off the schedule's lowest learning rates and the
    unaugmented last epochs.
    Files go to `work_dir` only: the model checkpoint, the CSV log and the
    BackupAndRestore state.
    """
    import keras

    from data_creation import MnistSumDataset, load_mnist, train_validation_split
    from helper_mnist import keep_freed_memory, seed_everything

    version = code_version()  # the code this run starts with
    keep_freed_memory()
    seed_everything(seed)
    (x_all, y_all), (x_test, y_test) = load_mnist(data_path)
    checksum = data_checksum(x_all, y_all, x_test, y_test)
    (x_train, y_train), (x_val, y_val) = train_validation_split(x_all, y_all, seed=seed)
    if quick:
        x_train, y_train = x_train[: QUICK["train_images"]], y_train[: QUICK["train_images"]]
        x_val, y_val = x_val[: QUICK["validation_images"]], y_val[: QUICK["validation_images"]]
        x_test, y_test = x_test[: QUICK["test_images"]], y_test[: QUICK["test_images"]]

    train_data = training_data(x_train, y_train, batch_size, epochs, seed)
    val_data = MnistSumDataset(x_val, y_val, EVALUATION_BATCH_SIZE, seed=seed + 1)
    test_data = MnistSumDataset(x_test, y_test, EVALUATION_BATCH_SIZE, seed=seed + 2)

    with distribution_scope(strategy):
        model = compiled_model(len(train_data), epochs)

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    backup_dir = work_dir / "backup"
    if not resume:
        shutil.rmtree(backup_dir, ignore_errors=True)
    best_path = work_dir / "best.keras"
    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup_dir)),
        keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: train_data.set_epoch(epoch)),
        keras.callbacks.SwapEMAWeights(swap_on_epoch=True),  # validate and checkpoint the averaged weights
        keras.callbacks.ModelCheckpoint(str(best_path), monitor="val_loss", save_best_only=True),
        keras.callbacks.CSVLogger(str(work_dir / HISTORY_FILE), append=resume),
    ]
    started = time.time()
    history = model.fit(train_data, validation_data=val_data, epochs=epochs, callbacks=callbacks, verbose=verbose)
    training_seconds = time.time() - started
    model.load_weights(best_path)

    test = model.evaluate(test_data, return_dict=True, verbose=0)
    results = {
        "test_digit_accuracy": float(test["digit_accuracy"]),
        "test_sum_accuracy": float(test["sum_accuracy"]),
        "test_images": len(x_test),
        "training_seconds": round(training_seconds, 1),
        "epochs_requested": epochs,
        "epochs_run": len(history.epoch),
        "seed": seed,
        "settings": {
            "batch_size": batch_size,
            "peak_learning_rate": PEAK_LEARNING_RATE,
            "warmup_epochs": WARMUP_EPOCHS,
            "ema_momentum": float(model.optimizer.ema_momentum),
            "augmented_epochs": train_data.augment_epochs,
            "quick": quick,
            "strategy": strategy,
            "train_images": len(x_train),
            "validation_images": len(x_val),
        },
        "data_sha256": checksum,
        "code_version": version,
        "versions": {"python": platform.python_version()}
        | {package: importlib.metadata.version(package) for package in ("tensorflow", "keras", "numpy")},
        "parameters": model.count_params(),
    }
    return model, history, results


def write_model_archive(model, metadata, path):
    """Write model.zip (`model.keras` + `metadata.json` with its SHA-256) aside, then rename into place."""
    from evaluate_func import METADATA_MEMBER, MODEL_MEMBER, file_sha256

    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        keras_path = Path(tmp) / MODEL_MEMBER
        model.save(keras_path)
        metadata = {**metadata, "model_sha256": file_sha256(keras_path)}
        staged = Path(tmp) / ARCHIVE_FILE
        with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(keras_path, MODEL_MEMBER)
            archive.writestr(METADATA_MEMBER, json.dumps(metadata, indent=2))
        os.replace(staged, path)


def ensure_writable(directory):
    """Create `directory` when needed and check that files can be written in it (raises OSError)."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory):
        pass


def main(argv=None):
    args = parse_args(argv)
    output_dir = args.output_dir
    try:
        ensure_writable(output_dir)
    except OSError as error:
        print(f"train.py: error: output directory {str(output_dir)!r} is not writable: {error}", file=sys.stderr)
        return 2
    work_dir = output_dir / "checkpoints"

    from network_architecture import save_model_plot

    try:
        model, _, results = train_model(
            args.data,
            args.epochs,
            args.batch_size,
            args.seed,
            work_dir,
            quick=args.quick,
            resume=args.resume,
            strategy=args.strategy,
            verbose=1 if sys.stdout.isatty() else 2,  # one line per epoch in logs
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"train.py: interrupted; nothing saved was replaced. Continue with --resume --output-dir {output_dir}",
            file=sys.stderr,
        )
        return 130
    print(f"test digit accuracy: {results['test_digit_accuracy']:.4%}")
    print(f"test sum accuracy:   {results['test_sum_accuracy']:.4%}")

    try:
        # Stage everything in the work directory, then rename: all three or none are replaced.
        write_model_archive(model, results, work_dir / ARCHIVE_FILE)
        names = [ARCHIVE_FILE, HISTORY_FILE] + ([PLOT_FILE] if save_model_plot(model, work_dir / PLOT_FILE) else [])
        for name in names:
            os.replace(work_dir / name, output_dir / name)
    except OSError as error:
        print(f"train.py: error: could not save the results in {str(output_dir)!r}: {error}", file=sys.stderr)
        return 2
    print("saved " + ", ".join(str(output_dir / name) for name in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
