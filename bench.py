"""Benchmark this project's network against the original project's architecture, side by side.

    python bench.py                 # the full comparison (what `make bench` does), into benchmarks/
    python bench.py --quick         # a small subset and a short cap, into benchmarks/quick/

Both models are trained on the same split of MNIST, each the way its own project
trains it, and measured the same way: training images/s, seconds per epoch,
wall time until the validation digit accuracy first reaches 99.4% and 99.6%,
test accuracy, inference images/s, single-image latency, peak memory,
parameters and FLOPs. Each model runs in a fresh process of its own, one after
the other, so neither inherits the other's memory, graphs or threads.
`report.md` and `report.json` hold both models, their ratios (project /
original) and a description of the machine.
"""

import argparse
import dataclasses
import datetime
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import psutil
from keras import layers, ops

import train
from data_creation import (
    IMAGE_SIZE,
    NUM_DIGITS,
    NUM_SUMS,
    MnistSumDataset,
    draw_addends,
    load_mnist,
    sum_labels,
    train_validation_split,
)
from evaluate_func import predict_digit_and_sum
from helper_mnist import keep_freed_memory, seed_everything

THRESHOLDS = (0.994, 0.996)  # validation digit accuracies whose first crossing is timed
LATENCY_WARMUP_CALLS = 20
LATENCY_CALLS = 200
FULL = dict(
    train_images=None,
    validation_images=None,
    test_images=None,  # None: all of train.py's split
    max_epochs=train.EPOCHS,
    cap_seconds=720,  # make train's time budget: 12 minutes of training per model
)
QUICK = dict(train_images=3_000, validation_images=1_000, test_images=2_000, max_epochs=2, cap_seconds=120)
OUTPUT_DIR = Path("benchmarks")
REPORT_JSON, REPORT_MD = "report.json", "report.md"

ORIGINAL_PARAMETERS = 347_277
ORIGINAL_BATCH_SIZE = 128
ORIGINAL_DROPOUT = 0.25
ORIGINAL_FEATURE_UNITS = (256, 128, 128)
ORIGINAL_SUM_UNITS = (64, 128, 256, 64, 38)


# --------------------------------------------------------------------------- the original architecture


@keras.saving.register_keras_serializable(package="bench")
class ArgmaxOneHot(layers.Layer):
    """The most probable class as a one-hot vector: (B, n) probabilities -> (B, n) zeros and one 1.

    A hard choice with no gradient, so the original's sum head cannot teach its
    digit head. A registered layer, unlike a Lambda, loads with safe_mode=True.
    """

    def call(self, probabilities):
        classes = probabilities.shape[-1]
        return ops.one_hot(ops.argmax(probabilities, axis=-1), classes, dtype=self.compute_dtype)


def original_conv_pair(x, filters, kernel_size, name):
    """Conv + ReLU -> conv -> batch norm -> ReLU -> 2x2 max pooling -> dropout; 'valid' padding, biases."""
    x = layers.Conv2D(filters, kernel_size, activation="relu", name=f"{name}_conv1")(x)
    x = layers.Conv2D(filters, kernel_size, name=f"{name}_conv2")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    x = layers.MaxPooling2D(name=f"{name}_pool")(x)
    return layers.Dropout(ORIGINAL_DROPOUT, name=f"{name}_dropout")(x)


def original_dense_block(x, units, name, dropout=0.0):
    """Dense -> batch norm -> ReLU, then dropout when `dropout` > 0."""
    x = layers.Dense(units, name=f"{name}_dense")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    return layers.Dropout(dropout, name=f"{name}_dropout")(x) if dropout else x


def build_original_model():
    """The original project's network (347,277 parameters), with this project's input and output names.

    It reads raw 0-255 pixels. Its sum head sees only the arg-max digit as a
    one-hot vector next to the addend, and learns the addition table from there.
    Where the description leaves a choice open: 'valid' padding and biases in
    every layer (the only reading that gives 347,277 parameters), a ReLU on the
    first conv of each pair, and dropout after each of the three dense blocks.
    """
    image = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="image")
    addend = keras.Input((NUM_DIGITS,), name="addend")

    x = original_conv_pair(image, 32, 5, "block1")  # 28 -> 24 -> 20 -> 10
    x = original_conv_pair(x, 64, 3, "block2")  # 10 -> 8 -> 6 -> 3
    x = layers.Flatten(name="flatten")(x)  # 3 * 3 * 64 = 576 features
    for index, units in enumerate(ORIGINAL_FEATURE_UNITS, 1):
        x = original_dense_block(x, units, f"features{index}", ORIGINAL_DROPOUT)
    digit = layers.Dense(NUM_DIGITS, activation="softmax", name="digit")(x)

    chosen = ArgmaxOneHot(name="digit_one_hot")(digit)
    s = layers.Concatenate(name="digit_and_addend")([chosen, addend])
    for index, units in enumerate(ORIGINAL_SUM_UNITS, 1):
        s = original_dense_block(s, units, f"sum{index}")
    total = layers.Dense(NUM_SUMS, activation="softmax", name="sum")(s)
    model = keras.Model({"image": image, "addend": addend}, {"digit": digit, "sum": total}, name="original")
    assert model.count_params() == ORIGINAL_PARAMETERS, f"{model.count_params():,} parameters, not 347,277"
    return model


def compile_original_model(model):
    """Adam at its default learning rate, cross-entropy and accuracy on both heads; no XLA, like ours."""
    model.compile(
        optimizer=keras.optimizers.Adam(),
        jit_compile=False,
        loss={"digit": "categorical_crossentropy", "sum": "categorical_crossentropy"},
        metrics={"digit": ["accuracy"], "sum": ["accuracy"]},
    )
    return model


# --------------------------------------------------------------------------- the two contestants


def setup_project(x_train, y_train, settings):
    """This project's network as train.py trains it: augmented images (plain ones in the last two
    epochs), addends re-drawn every epoch, AdamW with a warm-up and cosine decay over the maximum
    epochs, batch 128, validated (and finally left) with the averaged weights.

    Returns the model, its training data and its callbacks, like every setup."""
    data = train.training_data(x_train, y_train, train.BATCH_SIZE, settings.max_epochs, settings.seed)
    return train.compiled_model(len(data), settings.max_epochs), data, [keras.callbacks.SwapEMAWeights()]


def setup_original(x_train, y_train, settings):
    """The original architecture as the original project trained it: raw 0-255 pixels, one fixed addend
    per image, no augmentation, Adam (learning rate 1e-3), batch 128."""
    data = MnistSumDataset(x_train, y_train, ORIGINAL_BATCH_SIZE, seed=settings.seed)
    return compile_original_model(build_original_model()), data, []


SETUPS = {"project": setup_project, "original": setup_original}


def describe(setup):
    """A setup's description for the report: the first paragraph of its docstring, on one line."""
    return " ".join(setup.__doc__.split("\n\n")[0].split())


# --------------------------------------------------------------------------- measurements


def count_flops(model):
    """Forward FLOPs per image of the conv and dense layers, 2 per multiply-add; all other layers are ignored.

    conv: 2 * H_out * W_out * K * K * C_in * C_out;  dense: 2 * inputs * units.
    """
    flops = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            _, height, width, _ = layer.output.shape
            flops += 2 * height * width * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, layers.Dense):
            flops += 2 * int(np.prod(layer.kernel.shape))
    return flops


def threshold_key(threshold):
    """The results key of a threshold's crossing time: 0.994 -> 'seconds_to_99.4%'."""
    return f"seconds_to_{threshold:.1%}"


class TrainingClock(keras.callbacks.Callback):
    """Times a `fit`: every training step, every epoch, and when val_digit_accuracy first reaches each
    threshold. Stops training once `cap_seconds` have passed (checked after every step; Keras still
    validates the epoch cut short)."""

    def __init__(self, train_data, cap_seconds, thresholds=THRESHOLDS):
        super().__init__()
        self.batch_size, self.epoch_images = train_data.batch_size, len(train_data.images)
        self.cap_seconds, self.thresholds = cap_seconds, thresholds
        self.step_seconds, self.epochs, self.reached, self.capped = [], [], {}, False

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = self.step_ended = time.perf_counter()
        self.images = 0

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        images = min((batch + 1) * self.batch_size, self.epoch_images)
        if images - self.images == self.batch_size:  # a full batch
            self.step_seconds.append(now - self.step_ended)
        self.step_ended, self.images = now, images
        if now - self.started >= self.cap_seconds:
            self.capped = self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        accuracy = float(logs["val_digit_accuracy"])
        self.epochs.append(
            {
                "images": self.images,
                "training_seconds": round(self.step_ended - self.epoch_started, 2),
                "epoch_seconds": round(now - self.epoch_started, 2),
                "val_digit_accuracy": accuracy,
            }
        )
        for threshold in self.thresholds:
            if accuracy >= threshold:
                self.reached.setdefault(threshold, now - self.started)

    def summary(self):
        """Results of the run. Medians leave out the steps and epochs that build (or rebuild) the graphs."""
        later_full_epochs = [e["epoch_seconds"] for e in self.epochs[1:] if e["images"] == self.epoch_images]
        return {
            "epochs_run": len(self.epochs),
            "stopped_by": "time cap" if self.capped else "max epochs",
            "training_images_per_second": self.batch_size / statistics.median(self.step_seconds),
            "seconds_per_epoch": statistics.median(later_full_epochs) if later_full_epochs else None,
            "first_epoch_seconds": self.epochs[0]["epoch_seconds"],
            "final_val_digit_accuracy": self.epochs[-1]["val_digit_accuracy"],
            **{threshold_key(threshold): self.reached.get(threshold) for threshold in self.thresholds},
            "epochs": self.epochs,
        }


def measure_inference(model, images, digits, addends):
    """Test accuracies and images/s of predict_digit_and_sum over the whole set (after an untimed pass)."""
    predict_digit_and_sum(model, images, addends)  # traces the graph for these batch shapes
    started = time.perf_counter()
    predictions = predict_digit_and_sum(model, images, addends)
    seconds = time.perf_counter() - started
    return {
        "test_digit_accuracy": float(np.mean(predictions["digit"] == digits)),
        "test_sum_accuracy": float(np.mean(predictions["sum"] == sum_labels(digits, addends))),
        "inference_images_per_second": len(images) / seconds,
    }


def measure_latency(model, image, addend, calls=LATENCY_CALLS):
    """Median and 95th-percentile milliseconds of predict_digit_and_sum on one image, after warm-up calls."""
    for _ in range(LATENCY_WARMUP_CALLS):
        predict_digit_and_sum(model, image, addend)
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        predict_digit_and_sum(model, image, addend)
        seconds.append(time.perf_counter() - started)
    return {
        "latency_median_ms": 1000 * float(np.median(seconds)),
        "latency_p95_ms": 1000 * float(np.percentile(seconds, 95)),
    }


def peak_rss_mib():
    """This process's peak resident memory in MiB: the kernel's high-water mark VmHWM (Linux), else None.

    Not ru_maxrss: Linux carries a parent's peak into the processes it spawns (fork + exec).
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), None)
    return None if kib is None else kib / 1024


# --------------------------------------------------------------------------- one model, one process


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a benchmark run uses; an image count of None means all of train.py's split."""

    data: str | None
    seed: int
    quick: bool
    train_images: int | None
    validation_images: int | None
    test_images: int | None
    max_epochs: int
    cap_seconds: float
    latency_calls: int = LATENCY_CALLS


def load_data(settings):
    """Train, validation and test `(images, digits)`: train.py's seeded split, cut to the settings' sizes."""
    (x_all, y_all), test = load_mnist(settings.data)
    splits = (*train_validation_split(x_all, y_all, seed=settings.seed), test)
    sizes = (settings.train_images, settings.validation_images, settings.test_images)
    return [(images[:size], digits[:size]) for (images, digits), size in zip(splits, sizes, strict=True)]


def benchmark_model(name, settings):
    """Train and measure one model, "project" or "original", in this process; returns its results."""
    keep_freed_memory()
    seed_everything(settings.seed)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = load_data(settings)
    model, train_data, callbacks = SETUPS[name](x_train, y_train, settings)
    val_data = MnistSumDataset(x_val, y_val, train.EVALUATION_BATCH_SIZE, seed=settings.seed + 1)
    clock = TrainingClock(train_data, settings.cap_seconds)
    print(f"bench.py: training the {name} model", flush=True)
    model.fit(
        train_data, validation_data=val_data, epochs=settings.max_epochs, callbacks=[*callbacks, clock], verbose=2
    )
    addends = draw_addends(len(x_test), np.random.default_rng(settings.seed + 2))  # train.py's test addends
    return {
        "parameters": model.count_params(),
        "flops_per_image": count_flops(model),
        **clock.summary(),
        **measure_inference(model, x_test, y_test, addends),
        **measure_latency(model, x_test[0], int(addends[0]), settings.latency_calls),
        "peak_rss_mib": peak_rss_mib(),
    }


def benchmark_in_fresh_process(name, settings):
    """`benchmark_model` in a newly spawned Python process, so its memory peak and threads are its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(benchmark_model, name, settings).result()


# --------------------------------------------------------------------------- reports


class Metric(NamedTuple):
    """One row of the results table: its JSON key, label, value format, better direction, missing text."""

    key: str
    label: str
    format: str
    better: str
    missing: str = "n/a"


METRICS = (
    Metric("parameters", "Parameters", "{:,}", "lower"),
    Metric("flops_per_image", "FLOPs per image (forward, conv + dense)", "{:,}", "lower"),
    Metric("training_images_per_second", "Training images/s", "{:,.0f}", "higher"),
    Metric("seconds_per_epoch", "Seconds per epoch (training + validation)", "{:.1f}", "lower"),
    Metric("first_epoch_seconds", "Seconds for the first epoch (graphs built)", "{:.1f}", "lower"),
    *(
        Metric(
            threshold_key(t),
            f"Seconds until validation digit accuracy >= {t:.1%}",
            "{:.0f}",
            "lower",
            "not reached within the cap",
        )
        for t in THRESHOLDS
    ),
    Metric("test_digit_accuracy", "Test digit accuracy", "{:.2%}", "higher"),
    Metric("test_sum_accuracy", "Test sum accuracy", "{:.2%}", "higher"),
    Metric("inference_images_per_second", "Inference images/s (test set)", "{:,.0f}", "higher"),
    Metric("latency_median_ms", "Single-image latency, median (ms)", "{:.2f}", "lower"),
    Metric("latency_p95_ms", "Single-image latency, 95th percentile (ms)", "{:.2f}", "lower"),
    Metric("peak_rss_mib", "Peak memory, RSS high-water mark (MiB)", "{:,.0f}", "lower"),
)


def describe_machine():
    """CPU, cores, memory, load and library versions, for the report."""
    import tensorflow as tf

    cpuinfo = _cpuinfo()
    flags = cpuinfo.get("flags", "").split()
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count())
    return {
        "cpu": cpuinfo.get("model name") or platform.processor() or "unknown",
        "cpu_features": [flag for flag in ("avx2", "fma", "avx512f") if flag in flags],
        "logical_cores": os.cpu_count(),
        "usable_cores": len(usable),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "os": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _cpuinfo():
    """The first processor's fields in /proc/cpuinfo ({} where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = (line.partition(":") for line in text.split("\n\n")[0].splitlines())
    return {key.strip(): value.strip() for key, _, value in fields}


def ratios(results):
    """Project / original for every metric; None where either value is missing or the original's is 0."""
    project, original = results["project"], results["original"]
    return {
        metric.key: project[metric.key] / original[metric.key]
        if project[metric.key] is not None and original[metric.key]
        else None
        for metric in METRICS
    }


def build_report(machine, settings, results):
    """The JSON report: machine, settings, each model's description and results, and the ratios."""
    return {
        "machine": machine,
        "settings": {
            **dataclasses.asdict(settings),
            "thresholds": THRESHOLDS,
            "latency_warmup_calls": LATENCY_WARMUP_CALLS,
        },
        "models": {name: {"description": describe(SETUPS[name]), **results[name]} for name in SETUPS},
        "ratios": ratios(results),
    }


def _show(value, metric):
    return metric.missing if value is None else metric.format.format(value)


def results_table(report):
    """The Markdown table of every metric for both models and their ratio."""
    models, ratio = report["models"], report["ratios"]
    lines = ["| Metric | Project | Original | Project / original | Better |", "|---|--:|--:|--:|---|"]
    for metric in METRICS:
        shown = "n/a" if ratio[metric.key] is None else f"{ratio[metric.key]:.2f}"
        lines.append(
            f"| {metric.label} | {_show(models['project'][metric.key], metric)} "
            f"| {_show(models['original'][metric.key], metric)} | {shown} | {metric.better} |"
        )
    return lines


def markdown_report(report):
    """The whole report as Markdown: machine, settings, models, results and how each was measured."""
    machine, settings = report["machine"], report["settings"]
    sizes = [
        f"{size:,}" if size else "all"
        for size in (settings["train_images"], settings["validation_images"], settings["test_images"])
    ]
    lines = [
        "# Benchmark: this project's network against the original architecture",
        "",
        *(
            [
                "**Quick mode**: a small subset and a short cap, to check the benchmark runs; "
                "these numbers say little about the models.",
                "",
            ]
            if settings["quick"]
            else []
        ),
        "## Machine",
        "",
        f"- CPU: {machine['cpu']} ({', '.join(machine['cpu_features']) or 'no AVX2'}), "
        f"{machine['usable_cores']} usable of {machine['logical_cores']} logical cores",
        f"- RAM: {machine['ram_gib']} GiB; load average (1 min) at the start: {machine['load_average_at_start']}",
        f"- {machine['os']}; Python {machine['python']}, TensorFlow {machine['tensorflow']}, "
        f"Keras {machine['keras']}, NumPy {machine['numpy']}",
        f"- Date: {machine['date']}",
        "",
        "## Settings",
        "",
        f"- Images: {sizes[0]} training, {sizes[1]} validation, {sizes[2]} test (train.py's split, seed "
        f"{settings['seed']}); data: {settings['data'] or 'Keras download'}",
        f"- Per model: at most {settings['max_epochs']} epochs and {settings['cap_seconds']:g} s of training",
        "",
        "## Models",
        "",
        *(
            f"- **{name}**: {model['description']} Ran {model['epochs_run']} epoch(s), stopped by "
            f"{model['stopped_by']}; final validation digit accuracy {model['final_val_digit_accuracy']:.2%}."
            for name, model in report["models"].items()
        ),
        "",
        "## Results",
        "",
        *results_table(report),
        "",
        "## How each number is measured",
        "",
        "- Each model is trained and measured in a fresh process of its own, the project's first, "
        "on the same images; other processes on the machine share its CPU.",
        "- Training images/s: the batch size over the median wall time of a training step (full batches, "
        "data pipeline included; the median leaves out the steps that build graphs). Seconds per epoch: "
        "the median wall time of the full epochs after the first, validation included.",
        "- Seconds until a validation digit accuracy: wall time from the start of `fit` to the end of the "
        "first epoch whose validation reached it (checked once per epoch). The cap is checked after every "
        "batch; the epoch it cuts short is still validated.",
        "- Test accuracies: the final weights, `predict_digit_and_sum` on the test images with train.py's "
        "seeded test addends; inference images/s from a second, timed pass over them.",
        f"- Latency: {settings['latency_calls']} calls of `predict_digit_and_sum` on one image, after "
        f"{settings['latency_warmup_calls']} warm-up calls.",
        "- Peak memory: the kernel's resident-set high-water mark (VmHWM in /proc/self/status) of the "
        "model's own process: Python, TensorFlow, the data, training and inference.",
        "- FLOPs: counted from the layers, 2 per multiply-add: conv 2·H_out·W_out·K·K·C_in·C_out, "
        "dense 2·inputs·units; batch norm, pooling, activations and products are left out.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def positive_number(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value:g} is not a positive number")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK['train_images']:,} training images, {QUICK['max_epochs']} epochs, "
        f"a {QUICK['cap_seconds']} s cap: a check that runs in a few minutes",
    )
    parser.add_argument(
        "--cap-seconds",
        type=positive_number,
        help=f"training time cap per model (default {FULL['cap_seconds']}, {QUICK['cap_seconds']} with --quick)",
    )
    parser.add_argument(
        "--max-epochs",
        type=train.positive_int,
        help=f"default {FULL['max_epochs']} ({QUICK['max_epochs']} with --quick)",
    )
    parser.add_argument("--data", metavar="PATH", help="mnist.npz (default: $MNIST_NPZ, else Keras' download)")
    parser.add_argument("--seed", type=int, default=train.SEED)
    parser.add_argument("--output-dir", type=Path, help=f"default: {OUTPUT_DIR} ({OUTPUT_DIR / 'quick'} with --quick)")
    return parser.parse_args(argv)


def settings_from(args):
    """The run's Settings: the full or quick preset, with --cap-seconds and --max-epochs on top."""
    chosen = {"cap_seconds": args.cap_seconds, "max_epochs": args.max_epochs}
    preset = {**(QUICK if args.quick else FULL), **{key: value for key, value in chosen.items() if value}}
    return Settings(data=args.data or os.environ.get("MNIST_NPZ"), seed=args.seed, quick=args.quick, **preset)


def main(argv=None) -> int:
    """Benchmark both models and write the reports; 0 on success, 2 on bad data or output directory."""
    args = parse_args(argv)
    settings = settings_from(args)
    output_dir = args.output_dir or (OUTPUT_DIR / "quick" if args.quick else OUTPUT_DIR)
    try:
        train.ensure_writable(output_dir)
    except OSError as error:
        print(f"bench.py: error: cannot write to {str(output_dir)!r}: {error}", file=sys.stderr)
        return 2

    machine = describe_machine()
    try:
        results = {name: benchmark_in_fresh_process(name, settings) for name in SETUPS}
    except (ValueError, FileNotFoundError) as error:
        print(f"bench.py: error: {error}", file=sys.stderr)
        return 2
    report = build_report(machine, settings, results)
    markdown = markdown_report(report)
    (output_dir / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (output_dir / REPORT_MD).write_text(markdown)
    print(markdown)
    print(f"saved {output_dir / REPORT_MD} and {output_dir / REPORT_JSON}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
