"""Train the digit-and-sum network and save model.zip, training_history.log and model_plot.png.

    python train.py                 # the full run (what `make train` does)
    python train.py --quick         # a small subset and 2 epochs, into runs/quick/
    python train.py --resume        # continue an interrupted run from its last finished epoch
    TF_CONFIG=... python train.py --strategy multiworker   # on every machine of a cluster

A run writes into OUTPUT_DIR/checkpoints/ and moves its three files into place
only when it has finished, all of them or none: a failed or interrupted run
never replaces a saved model, log or plot.
"""

import argparse
import contextlib
import csv
import ctypes
import hashlib
import importlib.metadata
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

# ----------------------------------------------------------------------------- the recipe
EPOCHS = 18
BATCH_SIZE = 128
EVALUATION_BATCH_SIZE = 512  # validation and test batches
SEED = 0
VALIDATION_IMAGES = 5_000  # held out of MNIST's 60,000 training images
PEAK_LEARNING_RATE = 3e-3  # reached after a linear warm-up, then cosine decay to 0
WARMUP_EPOCHS = 1
WEIGHT_DECAY = 1e-4
EMA_STEPS = 2_000  # the weights are averaged over about this many steps (a fifth of the run at most)
AUGMENTATION = dict(max_rotation=10.0, max_shift=2.0, zoom_range=0.1)  # degrees, pixels, share of the size
CLEAN_EPOCHS = 2  # the last epochs train on the images as they are, like the test images (at most half the run)
QUICK = dict(train_images=5_000, validation_images=1_000, test_images=2_000, epochs=2)
# -----------------------------------------------------------------------------

HISTORY_FILE = "training_history.log"
PLOT_FILE = "model_plot.png"
ARCHIVE_FILE = "model.zip"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=positive_int, help=f"default {EPOCHS} ({QUICK['epochs']} with --quick)")
    parser.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--data", metavar="PATH", help="mnist.npz (default: $MNIST_NPZ, else Keras' download)")
    parser.add_argument("--output-dir", type=Path, help="default: . (runs/quick with --quick)")
    parser.add_argument("--quick", action="store_true", help="a small subset and few epochs, for a look in a minute")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in OUTPUT_DIR")
    parser.add_argument(
        "--strategy",
        choices=("default", "mirrored", "multiworker"),
        default="default",
        help="mirrored: all visible GPUs of this machine; multiworker: the workers named in $TF_CONFIG",
    )
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (QUICK["epochs"] if args.quick else EPOCHS)
    args.output_dir = args.output_dir or Path("runs/quick" if args.quick else ".")
    return args


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


# ----------------------------------------------------------------------------- data, model and strategy


def split_mnist(mnist, seed, quick):
    """Train, validation and test `(images, digits)`: a seeded, stratified split, cut small for --quick."""
    from data_creation import train_validation_split

    (x_all, y_all), test = mnist
    splits = (*train_validation_split(x_all, y_all, VALIDATION_IMAGES, seed), test)
    if not quick:
        return splits
    sizes = (QUICK["train_images"], QUICK["validation_images"], QUICK["test_images"])
    return tuple((images[:size], digits[:size]) for (images, digits), size in zip(splits, sizes, strict=True))


def training_data(images, digits, batch_size, epochs, seed, allowed_pairs=None):
    """The training batches: augmented, except in the last CLEAN_EPOCHS epochs (at most half the run);
    only the `allowed_pairs` of (digit, addend) when given."""
    from data_creation import MnistSumDataset

    augment_epochs = epochs - min(CLEAN_EPOCHS, epochs // 2)
    return MnistSumDataset(
        images,
        digits,
        batch_size,
        seed=seed,
        augmentation=AUGMENTATION,
        augment_epochs=augment_epochs,
        allowed_pairs=allowed_pairs,
    )


def evaluation_data(images, digits, seed, split, allowed_pairs=None):
    """The "validation" or "test" batches: fixed, seeded addends (of the `allowed_pairs` only, when
    given), no augmentation."""
    from data_creation import MnistSumDataset, evaluation_addends

    addends = evaluation_addends(len(images), seed, split, digits, allowed_pairs)
    return MnistSumDataset(images, digits, EVALUATION_BATCH_SIZE, addends=addends)


def learning_rate_schedule(steps_per_epoch, epochs):
    """Linear warm-up to PEAK_LEARNING_RATE for WARMUP_EPOCHS (at most 1/4 of the run), then cosine decay."""
    import keras

    steps = epochs * steps_per_epoch
    warmup = min(WARMUP_EPOCHS * steps_per_epoch, steps // 4)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=steps - warmup, warmup_target=PEAK_LEARNING_RATE, warmup_steps=warmup
    )


def ema_momentum(steps_per_epoch, epochs):
    """The weight average's momentum: a horizon of EMA_STEPS steps, at most a fifth of the run, so that
    the first steps' weights have faded out of the average by its end."""
    return 1 - 1 / max(1.0, min(EMA_STEPS, epochs * steps_per_epoch / 5))


def compiled_model(steps_per_epoch, epochs, sum_head=None):
    """The network with the named sum head (None: build_model's default), compiled with the recipe's
    schedule, weight decay and weight average."""
    from network_architecture import DEFAULT_SUM_HEAD, build_model, compile_model

    return compile_model(
        build_model(sum_head or DEFAULT_SUM_HEAD),
        learning_rate=learning_rate_schedule(steps_per_epoch, epochs),
        weight_decay=WEIGHT_DECAY,
        ema_momentum=ema_momentum(steps_per_epoch, epochs),
    )


def distribution_strategy(name):
    """The tf.distribute strategy to build the model in: "default" (one device), "mirrored" (every
    visible GPU, else every logical CPU) or "multiworker" (the processes named in $TF_CONFIG)."""
    import tensorflow as tf

    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name != "multiworker":
        return tf.distribute.get_strategy()

    class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """Mended for Keras 3 (keras-team/keras#20585): with two or more workers, `fit` asks for reductions
        of a nest of tensors and of scalars over axis 0, which the strategy refuses; each tensor is averaged
        over the replicas instead, which is what Keras wants."""

        def reduce(self, reduce_op, value, axis=None):
            reduce_across_replicas = super().reduce
            return tf.nest.map_structure(lambda one: reduce_across_replicas(reduce_op, one, None), value)

    return MultiWorkerStrategy()


def staging_dir(work_dir, strategy):
    """Where this process writes while it trains: `work_dir` for the process that saves the results (the
    chief of a multi-worker run), a directory of its own for every other worker."""
    if strategy.extended.should_checkpoint:
        return work_dir
    return work_dir / f"worker{strategy.cluster_resolver.task_id}"


# ----------------------------------------------------------------------------- callbacks


def live_validation(val_data):
    """A callback that logs the live weights' validation (`val_live_*`, beside the averaged weights' `val_*`,
    which lag behind early on) and each epoch's wall time (`epoch_seconds`). Runs before SwapEMAWeights."""
    import keras

    class LiveValidation(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs["epoch_seconds"] = time.perf_counter() - self.started
            live = self.model.evaluate(val_data, verbose=0, return_dict=True)
            logs.update({f"val_live_{name}": value for name, value in live.items() if name != "loss"})

    return LiveValidation()


def random_state_backup(directory):
    """A callback that saves, after each epoch, what BackupAndRestore does not and a resumed run needs to
    draw the same batches and dropout masks: Python's `random` (Keras shuffles batches with it) and the
    dropout layers' seeds; it puts them back when a resumed run starts that epoch."""
    import keras

    class RandomStateBackup(keras.callbacks.Callback):
        def dropout_seeds(self):
            return [layer.seed_generator.state for layer in self.model.layers if hasattr(layer, "seed_generator")]

        def on_epoch_begin(self, epoch, logs=None):
            saved = directory / f"random_state_{epoch}.json"
            if saved.exists():
                state = json.loads(saved.read_text())
                version, internal, gauss = state["python"]
                random.setstate((version, tuple(internal), gauss))
                for seed, value in zip(self.dropout_seeds(), state["dropout"], strict=True):
                    seed.assign(value)

        def on_epoch_end(self, epoch, logs=None):
            state = {
                "python": random.getstate(),
                "dropout": [keras.ops.convert_to_numpy(seed).tolist() for seed in self.dropout_seeds()],
            }
            directory.mkdir(parents=True, exist_ok=True)
            staged = directory / "random_state.tmp"
            staged.write_text(json.dumps(state))
            os.replace(staged, directory / f"random_state_{epoch + 1}.json")

    return RandomStateBackup()


def read_log(path):
    """The rows of a CSV training log as dicts of floats ([] when there is none)."""
    if not Path(path).exists():
        return []
    with open(path, newline="") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


# ----------------------------------------------------------------------------- training


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
    sum_head=None,
    allowed_pairs=None,
):
    """Train from scratch (or resume) and return `(model, results)`: the weights of the best epoch by
    validation loss, and the test accuracies with what it takes to reproduce them.

    `sum_head` names one of network_architecture.SUM_HEADS (None: the default).
    `allowed_pairs`, a (10, 10) boolean table of (digit, addend), limits the
    training and validation pairs to those allowed; the test set keeps all of them.

    Validation, checkpoints and the returned model use the optimizer's moving
    average of the weights. Every planned epoch runs: the learning-rate schedule,
    not early stopping, sets a run's length. Files go to `work_dir` only.
    """
    import keras

    from data_creation import load_mnist
    from network_architecture import DEFAULT_SUM_HEAD

    version = code_version()  # the code this run starts with
    keep_freed_memory()
    keras.utils.set_random_seed(seed)
    mnist = load_mnist(data_path)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = split_mnist(mnist, seed, quick)
    train_data = training_data(x_train, y_train, batch_size, epochs, seed, allowed_pairs)
    val_data = evaluation_data(x_val, y_val, seed, "validation", allowed_pairs)

    distribution = distribution_strategy(strategy)
    with distribution.scope():
        model = compiled_model(len(train_data), epochs, sum_head)

    work_dir = staging_dir(Path(work_dir), distribution)
    work_dir.mkdir(parents=True, exist_ok=True)
    backup_dir, best_path, log_path = work_dir / "backup", work_dir / "best.keras", work_dir / HISTORY_FILE
    if not resume:
        shutil.rmtree(backup_dir, ignore_errors=True)
    earlier_epochs = read_log(log_path) if resume else []
    swap_ema = keras.callbacks.SwapEMAWeights(swap_on_epoch=True)
    # The backup holds the averaged weights (as the model does at every epoch's end), so a resumed run
    # swaps the live ones back in exactly as the next epoch would.
    swap_ema._ema_weights_in_model = (backup_dir / "training_metadata.json").exists()
    callbacks = [
        keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: train_data.set_epoch(epoch)),
        live_validation(val_data),
        swap_ema,  # validate, checkpoint and back up the averaged weights
        keras.callbacks.ModelCheckpoint(
            str(best_path),
            monitor="val_loss",
            save_best_only=True,
            initial_value_threshold=min((row["val_loss"] for row in earlier_epochs), default=None),
        ),
        random_state_backup(backup_dir),
        # Backed up before the epoch is logged, so a logged epoch never trains again; a run killed while
        # writing the backup resumes from the one before (double_checkpoint).
        keras.callbacks.BackupAndRestore(str(backup_dir), double_checkpoint=True),
        keras.callbacks.CSVLogger(str(log_path), append=resume),
    ]
    history = model.fit(train_data, validation_data=val_data, epochs=epochs, callbacks=callbacks, verbose=verbose)
    model.load_weights(best_path)

    epochs_logged = read_log(log_path)
    test = model.evaluate(evaluation_data(x_test, y_test, seed, "test"), return_dict=True, verbose=0)
    results = {
        "test_digit_accuracy": float(test["digit_accuracy"]),
        "test_sum_accuracy": float(test["sum_accuracy"]),
        "test_images": len(x_test),
        "training_seconds": round(sum(row["epoch_seconds"] for row in epochs_logged), 1),
        "epochs_requested": epochs,
        "epochs_run": len(epochs_logged),
        "resumed_at_epoch": history.epoch[0] if history.epoch and history.epoch[0] > 0 else None,
        "seed": seed,
        "settings": {
            "batch_size": batch_size,
            "peak_learning_rate": PEAK_LEARNING_RATE,
            "warmup_epochs": WARMUP_EPOCHS,
            "weight_decay": WEIGHT_DECAY,
            "ema_momentum": float(model.optimizer.ema_momentum),
            "augmentation": AUGMENTATION,
            "augmented_epochs": train_data.augment_epochs,
            "quick": quick,
            "strategy": strategy,
            "sum_head": sum_head or DEFAULT_SUM_HEAD,
            "withheld_pairs": None if allowed_pairs is None else np.argwhere(~np.asarray(allowed_pairs)).tolist(),
            "train_images": len(x_train),
            "validation_images": len(x_val),
        },
        "data_sha256": data_checksum(*mnist[0], *mnist[1]),  # the whole of MNIST, as loaded
        "code_version": version,
        "machine": describe_cpu(),
        "versions": {"python": platform.python_version()}
        | {package: importlib.metadata.version(package) for package in ("tensorflow", "keras", "numpy")},
        "parameters": model.count_params(),
    }
    return model, results


def data_checksum(*arrays):
    """SHA-256 over the raw bytes of the arrays, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(array.tobytes())
    return digest.hexdigest()


def code_version():
    """The git commit of this checkout (with '+dirty' for uncommitted changes), or 'unknown'."""

    def git(*args):
        here = Path(__file__).resolve().parent
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit, dirty = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def describe_cpu():
    """The CPU's name and widest vector instructions: seeded runs are bit-identical only on one of them."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)}
    flags = fields.get("flags", "").split()
    return {
        "cpu": fields.get("model name") or platform.processor() or "unknown",
        "instruction_set": next((name for name in ("avx512f", "avx2", "avx") if name in flags), platform.machine()),
    }


def keep_freed_memory():
    """Ask glibc to keep freed memory rather than return it to the system: each training step frees and
    reallocates the same large buffers, and page-faulting them back in slows it down. No effect off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    trim_threshold, top_pad, mmap_threshold = -1, -2, -3  # mallopt() parameters in glibc's malloc.h
    for option, value in ((trim_threshold, 1 << 30), (mmap_threshold, 1 << 30), (top_pad, 1 << 26)):
        libc.mallopt(option, value)


# ----------------------------------------------------------------------------- saving


def write_model_archive(model, metadata, path):
    """Write model.zip (`model.keras` + `metadata.json` with its SHA-256) aside, then rename it into place."""
    from evaluate_func import METADATA_MEMBER, MODEL_MEMBER, file_sha256

    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        keras_path, staged = Path(tmp) / MODEL_MEMBER, Path(tmp) / ARCHIVE_FILE
        model.save(keras_path)
        metadata = {**metadata, "model_sha256": file_sha256(keras_path)}
        with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(keras_path, MODEL_MEMBER)
            archive.writestr(METADATA_MEMBER, json.dumps(metadata, indent=2))
        os.replace(staged, path)


def replace_all_or_none(names, staging_dir, output_dir):
    """Move the staged files `names` into `output_dir`, all of them or, when a move fails, none: the files
    they replace are set aside first and put back."""
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".previous-") as previous:
        old = [name for name in names if (output_dir / name).exists()]
        for name in old:
            os.replace(output_dir / name, Path(previous) / name)
        moved = []
        try:
            for name in names:
                os.replace(staging_dir / name, output_dir / name)
                moved.append(name)
        except OSError:
            for name in moved:
                os.replace(output_dir / name, staging_dir / name)
            for name in old:
                os.replace(Path(previous) / name, output_dir / name)
            raise


def ensure_writable(directory):
    """Create `directory` when needed and check that files can be written in it (raises OSError)."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory):
        pass


@contextlib.contextmanager
def native_stderr_silenced():
    """Hide what TensorFlow's C++ libraries print while they load, before any logging setting applies."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv=None):
    args = parse_args(argv)
    output_dir, work_dir = args.output_dir, args.output_dir / "checkpoints"
    try:
        ensure_writable(output_dir)
    except OSError as error:
        print(f"train.py: error: output directory {str(output_dir)!r} is not writable: {error}", file=sys.stderr)
        return 2
    with native_stderr_silenced():
        import keras  # noqa: F401  (loads TensorFlow quietly)
    from network_architecture import save_model_plot

    try:
        model, results = train_model(
            args.data,
            args.epochs,
            args.batch_size,
            args.seed,
            work_dir,
            quick=args.quick,
            resume=args.resume,
            strategy=args.strategy,
            verbose=1 if sys.stdout.isatty() else 2,  # a progress bar in a terminal, one line per epoch in logs
        )
    except (ValueError, OSError) as error:  # bad data, or a backup that cannot be read
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        message = f"interrupted; nothing saved was replaced. Continue with --resume --output-dir {output_dir}"
        print(f"train.py: {message}", file=sys.stderr)
        return 130
    print(f"test digit accuracy: {results['test_digit_accuracy']:.4%}")
    print(f"test sum accuracy:   {results['test_sum_accuracy']:.4%}")
    if not model.distribute_strategy.extended.should_checkpoint:  # a worker; the chief saves
        shutil.rmtree(staging_dir(work_dir, model.distribute_strategy))
        print("trained as a worker; the chief saves the results")
        return 0
    try:
        write_model_archive(model, results, work_dir / ARCHIVE_FILE)
        names = [ARCHIVE_FILE, HISTORY_FILE] + ([PLOT_FILE] if save_model_plot(model, work_dir / PLOT_FILE) else [])
        replace_all_or_none(names, work_dir, output_dir)
    except OSError as error:
        print(f"train.py: error: could not save the results in {str(output_dir)!r}: {error}", file=sys.stderr)
        return 2
    print("saved " + ", ".join(str(output_dir / name) for name in names))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no TensorFlow C++ notes on stderr
    sys.exit(main())
