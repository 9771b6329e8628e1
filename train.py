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
import shutil
import sys
from pathlib import Path

import numpy as np

from quiet_keras import import_keras_quietly
from run_bookkeeping import (
    ARCHIVE_FILE,
    distribution_strategy,
    ensure_writable,
    fastest_precision,
    keep_freed_memory,
    live_validation,
    live_weights_swapped_back,
    positive_int,
    provenance,
    random_state_backup,
    read_log,
    replace_all_or_none,
    staging_dir,
    write_model_archive,
)

# ----------------------------------------------------------------------------- the recipe
EPOCHS = 18
BATCH_SIZE = 128
SEED = 0
VALIDATION_IMAGES = 5_000  # held out of MNIST's 60,000 training images
PEAK_LEARNING_RATE = 3e-3  # reached after a linear warm-up, then cosine decay to 0
WARMUP_EPOCHS = 1
WEIGHT_DECAY = 1e-4
EMA_STEPS = 2_000  # the weights are averaged over about this many steps (a fifth of the run at most)
AUGMENTATION = dict(max_rotation=10.0, max_shift=2.0, zoom_range=0.1)  # degrees, pixels, share of the size
CLEAN_EPOCHS = 2  # the last epochs train on the images as they are, like the test images (at most half the run)
LABEL_SMOOTHING = 0.0
WIDTH = 1.0  # multiplies the image branch's filters and units
EMA_WARMUP = False  # True: the average's momentum grows from 0 over the first steps
PRECISION = "auto"  # training's dtype policy: "float32", "mixed_bfloat16" or "auto" (the faster on this machine)
QUICK = dict(train_images=5_000, validation_images=1_000, test_images=2_000, epochs=2)
# -----------------------------------------------------------------------------

HISTORY_FILE = "training_history.log"
PLOT_FILE = "model_plot.png"
BEST_FILE = "best.keras"  # in the run's checkpoints/, beside its backup and TensorBoard logs
TENSORBOARD_DIR = "tensorboard"


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

    augmented = epochs - min(CLEAN_EPOCHS, epochs // 2)
    return MnistSumDataset(
        images,
        digits,
        batch_size,
        seed=seed,
        augmentation=AUGMENTATION,
        augment_epochs=augmented,
        allowed_pairs=allowed_pairs,
    )


def evaluation_data(images, digits, seed, split, allowed_pairs=None):
    """The "validation" or "test" batches: fixed, seeded addends (of the `allowed_pairs` only, when
    given), no augmentation."""
    from data_creation import EVALUATION_BATCH, MnistSumDataset, evaluation_addends

    addends = evaluation_addends(len(images), seed, split, digits, allowed_pairs)
    return MnistSumDataset(images, digits, EVALUATION_BATCH, addends=addends)


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


def recipe_model(steps_per_epoch, epochs, sum_head=None, precision="float32"):
    """The network with the named sum head (None: build_model's default) in the recipe's width, computing
    in `precision` (a dtype policy), compiled with the recipe's schedule, weight decay, weight average and
    label smoothing."""
    import keras

    from network_architecture import DEFAULT_SUM_HEAD, build_model, compile_model

    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)  # the layers keep the policy they are built with
    try:
        model = build_model(sum_head or DEFAULT_SUM_HEAD, WIDTH)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return compile_model(
        model,
        learning_rate=learning_rate_schedule(steps_per_epoch, epochs),
        weight_decay=WEIGHT_DECAY,
        ema_momentum=ema_momentum(steps_per_epoch, epochs),
        label_smoothing=LABEL_SMOOTHING,
        ema_warmup=EMA_WARMUP,
    )


# ----------------------------------------------------------------------------- callbacks


def training_callbacks(work_dir, train_data, val_data, resume):
    """The callbacks of `fit`, in the order they run at each epoch's end: the live weights' validation; the
    swap to the averaged weights, which the checkpoint of the best epoch and the backup then hold; the backup
    (before the epoch is logged, so a logged epoch never trains again); the CSV log and TensorBoard's."""
    import keras

    work_dir.mkdir(parents=True, exist_ok=True)
    backup_dir, tensorboard_dir = work_dir / "backup", work_dir / TENSORBOARD_DIR
    if not resume:  # a fresh run: nothing of an earlier one is resumed or mixed into its logs
        shutil.rmtree(backup_dir, ignore_errors=True)
        shutil.rmtree(tensorboard_dir, ignore_errors=True)
    best_so_far = min((row["val_loss"] for row in read_log(work_dir / HISTORY_FILE)), default=None) if resume else None
    restoring = (backup_dir / "training_metadata.json").exists()  # BackupAndRestore will load this backup
    return [
        keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: train_data.set_epoch(epoch)),
        live_validation(val_data),
        keras.callbacks.SwapEMAWeights(swap_on_epoch=True),
        keras.callbacks.ModelCheckpoint(
            str(work_dir / BEST_FILE), monitor="val_loss", save_best_only=True, initial_value_threshold=best_so_far
        ),
        random_state_backup(backup_dir),
        keras.callbacks.BackupAndRestore(str(backup_dir), double_checkpoint=True),  # killed mid-write: the one before
        *([live_weights_swapped_back()] if restoring else []),  # after the backup is loaded
        keras.callbacks.CSVLogger(str(work_dir / HISTORY_FILE), append=resume),
        keras.callbacks.TensorBoard(str(tensorboard_dir)),
    ]


# ----------------------------------------------------------------------------- training


def train_model(
    data_path=None, epochs=EPOCHS, batch_size=BATCH_SIZE, seed=SEED, work_dir=Path("checkpoints"), quick=False,
    resume=False, strategy="default", verbose="auto", sum_head=None, allowed_pairs=None
):  # fmt: skip
    """Train from scratch (or resume) and return `(model, results)`: the averaged weights of the epoch with
    the lowest validation loss, and the metadata of the run (test accuracies, settings, provenance).

    `sum_head` names one of network_architecture.SUM_HEADS (None: the default); `allowed_pairs`, a (10, 10)
    boolean table of (digit, addend), limits the training and validation pairs (not the test's) to those
    allowed. Every planned epoch runs: the schedule, not early stopping, sets a run's length.
    """
    import keras

    from data_creation import load_mnist
    from network_architecture import DEFAULT_SUM_HEAD

    keep_freed_memory()
    keras.utils.set_random_seed(seed)
    mnist = load_mnist(data_path)
    reproduce = provenance(*mnist[0], *mnist[1])  # the data as loaded, and the code this run starts with
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = split_mnist(mnist, seed, quick)
    train_data = training_data(x_train, y_train, batch_size, epochs, seed, allowed_pairs)
    val_data = evaluation_data(x_val, y_val, seed, "validation", allowed_pairs)

    distribution = distribution_strategy(strategy)
    precision = fastest_precision() if PRECISION == "auto" else PRECISION
    with distribution.scope():
        model = recipe_model(len(train_data), epochs, sum_head, precision)

    work_dir = staging_dir(Path(work_dir), distribution)
    callbacks = training_callbacks(work_dir, train_data, val_data, resume)
    history = model.fit(train_data, validation_data=val_data, epochs=epochs, callbacks=callbacks, verbose=verbose)
    model.load_weights(work_dir / BEST_FILE)
    if precision != "float32":  # the same weights, computing in float32: the saved model runs alike on any CPU
        with distribution.scope():
            trained, model = model, recipe_model(len(train_data), epochs, sum_head, "float32")
        model.set_weights(trained.get_weights())

    epochs_logged = read_log(work_dir / HISTORY_FILE)
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
            "label_smoothing": LABEL_SMOOTHING,
            "width": WIDTH,
            "ema_warmup": EMA_WARMUP,
            "precision": precision,
            "quick": quick,
            "strategy": strategy,
            "sum_head": sum_head or DEFAULT_SUM_HEAD,
            "withheld_pairs": None if allowed_pairs is None else np.argwhere(~np.asarray(allowed_pairs)).tolist(),
            "train_images": len(x_train),
            "validation_images": len(x_val),
        },
        **reproduce,
        "parameters": model.count_params(),
    }
    return model, results


# ----------------------------------------------------------------------------- the command line


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=positive_int, help=f"default {EPOCHS} ({QUICK['epochs']} with --quick)")
    parser.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--data", metavar="PATH", help="mnist.npz (default: $MNIST_NPZ, else Keras' download)")
    parser.add_argument("--output-dir", type=Path, help="default: . (runs/quick with --quick)")
    parser.add_argument("--quick", action="store_true", help="a small subset and few epochs, for a look in a minute")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in OUTPUT_DIR")
    strategies = "mirrored: this machine's GPUs; multiworker: the workers named in $TF_CONFIG"
    parser.add_argument(
        "--strategy", choices=("default", "mirrored", "multiworker"), default="default", help=strategies
    )
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (QUICK["epochs"] if args.quick else EPOCHS)
    args.output_dir = args.output_dir or Path("runs/quick" if args.quick else ".")
    return args


def main(argv=None):
    args = parse_args(argv)
    output_dir, work_dir = args.output_dir, args.output_dir / "checkpoints"
    try:
        ensure_writable(output_dir)
    except OSError as error:
        print(f"train.py: error: output directory {str(output_dir)!r} is not writable: {error}", file=sys.stderr)
        return 2
    import_keras_quietly()
    from network_architecture import save_model_plot

    try:
        verbose = 1 if sys.stdout.isatty() else 2  # a progress bar in a terminal, one line per epoch in logs
        model, results = train_model(
            args.data, args.epochs, args.batch_size, args.seed, work_dir, quick=args.quick, resume=args.resume,
            strategy=args.strategy, verbose=verbose
        )  # fmt: skip
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
    sys.exit(main())
