"""Benchmark this project's network against the original project's architecture, side by side.

    python bench.py             # the full comparison (what `make bench` does), into benchmarks/
    python bench.py --quick     # train.py's quick subset and a short cap, into benchmarks/quick/

Each model trains on train.py's split the way its own project trained it, in a fresh process, and is measured
the same way; report.json and report.md hold the results, their ratios (project / original) and the machine.
"""

import argparse
import datetime
import importlib.metadata
import json
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

import run_bookkeeping
import train
from data_creation import IMAGE_SIZE, NUM_DIGITS, NUM_SUMS, MnistSumDataset, draw_addends, load_mnist
from evaluate_func import predict_digit_and_sum

THRESHOLDS = (0.994, 0.996)  # validation digit accuracies whose first crossing is timed
LATENCY_CALLS = 200  # timed one-image predictions, after 20 untimed ones
FULL = dict(max_epochs=train.EPOCHS, cap_seconds=720)  # 12 minutes of training per model at most
QUICK = dict(max_epochs=2, cap_seconds=120)
REPORT_JSON, REPORT_MD = "report.json", "report.md"


@keras.saving.register_keras_serializable(package="bench")
class ArgmaxOneHot(layers.Layer):
    """The most probable class as a one-hot vector, with no gradient: the original's sum head sees the chosen
    digit only. A registered layer, unlike a Lambda, loads with safe_mode=True."""

    def call(self, probabilities):
        return ops.one_hot(ops.argmax(probabilities, axis=-1), probabilities.shape[-1], dtype=self.compute_dtype)


def dense_block(x, units, name, dropout=0.0):
    """Dense -> batch norm -> ReLU [-> dropout]."""
    x = layers.Dense(units, name=f"{name}_dense")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    return layers.Dropout(dropout, name=f"{name}_dropout")(x) if dropout else x


def build_original_model():
    """The original project's network, with this project's input and output names: two pairs of convolutions,
    three dense blocks for the digit, and a sum head that sees only the arg-max digit next to the addend."""
    image = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="image")
    addend = keras.Input((NUM_DIGITS,), name="addend")
    x = image  # raw 0-255 pixels, as the original read them
    for block, (filters, size) in enumerate(((32, 5), (64, 3)), 1):
        x = layers.Conv2D(filters, size, activation="relu", name=f"block{block}_conv1")(x)
        x = layers.Conv2D(filters, size, name=f"block{block}_conv2")(x)
        x = layers.BatchNormalization(name=f"block{block}_bn")(x)
        x = layers.MaxPooling2D(name=f"block{block}_pool")(layers.ReLU(name=f"block{block}_relu")(x))
        x = layers.Dropout(0.25, name=f"block{block}_dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    for index, units in enumerate((256, 128, 128), 1):
        x = dense_block(x, units, f"features{index}", dropout=0.25)
    digit = layers.Dense(NUM_DIGITS, activation="softmax", name="digit")(x)
    s = layers.Concatenate(name="digit_and_addend")([ArgmaxOneHot(name="digit_one_hot")(digit), addend])
    for index, units in enumerate((64, 128, 256, 64, 38), 1):
        s = dense_block(s, units, f"sum{index}")
    total = layers.Dense(NUM_SUMS, activation="softmax", name="sum")(s)
    return keras.Model({"image": image, "addend": addend}, {"digit": digit, "sum": total}, name="original")


def setup_project(x_train, y_train, settings):
    """This project's network as train.py trains it (augmented images and re-drawn addends, AdamW with
    warm-up and cosine decay over the maximum epochs, the averaged weights validated and kept)."""
    data = train.training_data(x_train, y_train, train.BATCH_SIZE, settings["max_epochs"], settings["seed"])
    return train.recipe_model(len(data), settings["max_epochs"]), data, [keras.callbacks.SwapEMAWeights()]


def setup_original(x_train, y_train, settings):
    """The original architecture as the original project trained it (one fixed addend per image, no
    augmentation, Adam at its default learning rate, batch 128)."""
    addends = draw_addends(len(x_train), np.random.default_rng(settings["seed"]))
    model = build_original_model()
    loss = {"digit": "categorical_crossentropy", "sum": "categorical_crossentropy"}
    metrics = {"digit": ["accuracy"], "sum": ["accuracy"]}
    model.compile(optimizer=keras.optimizers.Adam(), loss=loss, metrics=metrics, jit_compile=False)
    return model, MnistSumDataset(x_train, y_train, 128, addends=addends), []


SETUPS = {"project": setup_project, "original": setup_original}  # their docstrings describe them in the reports


class TrainingClock(keras.callbacks.Callback):
    """Times each epoch's steps and the first crossing of each threshold; stops training after `cap_seconds`."""

    def __init__(self, cap_seconds):
        super().__init__()
        self.cap_seconds = cap_seconds
        self.epochs, self.reached, self.capped = [], {}, False  # reached: threshold -> seconds since the start

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps_ended = time.perf_counter()
        if self.steps_ended - self.started >= self.cap_seconds:
            self.capped = self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        accuracy = float(logs["val_digit_accuracy"])
        self.epochs.append({"training_seconds": self.steps_ended - self.epoch_started, "val_digit_accuracy": accuracy})
        for threshold in THRESHOLDS:
            if accuracy >= threshold:
                self.reached.setdefault(threshold, time.perf_counter() - self.started)


def count_flops(model):
    """Forward FLOPs per image of the conv and dense layers, 2 per multiply-add (other layers are ignored)."""
    flops = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            flops += 2 * int(np.prod(layer.output.shape[1:3])) * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, layers.Dense):
            flops += 2 * int(np.prod(layer.kernel.shape))
    return flops


def milliseconds_per_call(call, count):
    """Median and 95th percentile milliseconds of `count` calls, after 20 untimed ones."""
    for _ in range(20):
        call()
    milliseconds = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        milliseconds.append(1000 * (time.perf_counter() - started))
    return float(np.median(milliseconds)), float(np.percentile(milliseconds, 95))


def peak_memory_mib():
    """This process's resident-memory high-water mark (VmHWM; Linux only, else None)."""
    status = Path("/proc/self/status")
    lines = status.read_text().splitlines() if status.exists() else []
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmHWM:")), None)


def benchmark_model(name, settings):
    """Train and measure one model, "project" or "original", in this process; returns its results."""
    run_bookkeeping.keep_freed_memory()
    keras.utils.set_random_seed(settings["seed"])
    mnist = load_mnist(settings["data"])
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = train.split_mnist(mnist, settings["seed"], settings["quick"])
    model, train_data, callbacks = SETUPS[name](x_train, y_train, settings)
    clock = TrainingClock(settings["cap_seconds"])
    print(f"bench.py: training the {name} model", flush=True)
    val_data = train.evaluation_data(x_val, y_val, settings["seed"], "validation")
    model.fit(
        train_data, validation_data=val_data, epochs=settings["max_epochs"], callbacks=[*callbacks, clock], verbose=2
    )
    addends = train.evaluation_data(x_test, y_test, settings["seed"], "test").addends
    predict_digit_and_sum(model, x_test, addends)  # traces the graph for these batch shapes
    started = time.perf_counter()
    predicted = predict_digit_and_sum(model, x_test, addends)
    inference_seconds = time.perf_counter() - started
    latency = milliseconds_per_call(lambda: predict_digit_and_sum(model, x_test[0], 0), settings["latency_calls"])
    epoch_seconds = [epoch["training_seconds"] for epoch in clock.epochs]
    return {
        "description": " ".join(SETUPS[name].__doc__.split()),
        "parameters": model.count_params(),
        "flops_per_image": count_flops(model),
        "epochs_run": len(clock.epochs),
        "stopped_by": "time cap" if clock.capped else "max epochs",
        "training_images_per_second": len(x_train) / np.median(epoch_seconds[1:] or epoch_seconds),
        **{f"seconds_to_{threshold:.1%}": clock.reached.get(threshold) for threshold in THRESHOLDS},
        "final_val_digit_accuracy": clock.epochs[-1]["val_digit_accuracy"],
        "test_digit_accuracy": float(np.mean(predicted["digit"] == y_test)),
        "test_sum_accuracy": float(np.mean(predicted["sum"] == y_test + addends)),
        "inference_images_per_second": len(x_test) / inference_seconds,
        "latency_median_ms": latency[0],
        "latency_p95_ms": latency[1],
        "peak_memory_mib": peak_memory_mib(),
        "epochs": clock.epochs,
    }


METRICS = (  # key, label, format, which is better
    ("parameters", "Parameters", "{:,}", "lower"),
    ("flops_per_image", "FLOPs per image (forward, conv + dense)", "{:,}", "lower"),
    ("training_images_per_second", "Training images/s (median epoch)", "{:,.0f}", "higher"),
    *(
        (f"seconds_to_{t:.1%}", f"Seconds until validation digit accuracy >= {t:.1%}", "{:.0f}", "lower")
        for t in THRESHOLDS
    ),
    ("test_digit_accuracy", "Test digit accuracy (last epoch)", "{:.2%}", "higher"),
    ("test_sum_accuracy", "Test sum accuracy (last epoch)", "{:.2%}", "higher"),
    ("inference_images_per_second", "Inference images/s (test set)", "{:,.0f}", "higher"),
    ("latency_median_ms", "One-image latency, median (ms)", "{:.2f}", "lower"),
    ("latency_p95_ms", "One-image latency, 95th percentile (ms)", "{:.2f}", "lower"),
    ("peak_memory_mib", "Peak memory (MiB)", "{:,.0f}", "lower"),
)


def describe_machine():
    """CPU, cores, load and library versions, for the report."""
    libraries = [f"{name} {importlib.metadata.version(name)}" for name in ("tensorflow", "keras", "numpy")]
    return {
        **run_bookkeeping.describe_cpu(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "libraries": ", ".join(libraries),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def markdown_report(report):
    """The report as Markdown: machine, settings, models and the side-by-side table."""

    def shown(value, form, missing="not reached"):
        return missing if value is None else form.format(value)

    models = report["models"]
    lines = ["# Benchmark: this project's network against the original architecture", ""]
    if report["settings"]["quick"]:
        lines += ["**Quick mode**: a small subset and a short cap; these numbers say little about the models.", ""]
    lines += [
        "Machine: {cpu} ({instruction_set}), {cores} cores, load {load_average_at_start} at the start; "
        "Python {python}, {libraries}; {date}.".format(**report["machine"]),
        "",
        "Each model trains for at most {max_epochs} epoch(s) and {cap_seconds:g} s in a fresh process on train.py's "
        "split; test figures use its last epoch's weights and train.py's test addends.".format(**report["settings"]),
        "",
    ]
    for name, model in models.items():
        lines.append(
            f"- **{name}** ({model['epochs_run']} epoch(s), stopped by {model['stopped_by']}): {model['description']}"
        )
    lines += ["", "| Metric | Project | Original | Project / original | Better |", "|---|--:|--:|--:|---|"]
    for key, label, form, better in METRICS:
        project, original = shown(models["project"][key], form), shown(models["original"][key], form)
        ratio = shown(report["ratios"][key], "{:.2f}", "n/a")
        lines.append(f"| {label} | {project} | {original} | {ratio} | {better} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    """Benchmark both models and write the reports; 0 on success, 2 on bad data or output directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train.py's quick subset, 2 epochs, a 120 s cap")
    parser.add_argument("--cap-seconds", type=run_bookkeeping.positive_int, help="training time cap per model")
    parser.add_argument("--max-epochs", type=run_bookkeeping.positive_int, help="epochs per model at most")
    parser.add_argument("--data", metavar="PATH", help="mnist.npz (default: $MNIST_NPZ, else Keras' download)")
    parser.add_argument("--seed", type=int, default=train.SEED)
    parser.add_argument("--output-dir", type=Path, help="default: benchmarks (benchmarks/quick with --quick)")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    settings = {
        "quick": args.quick,
        "max_epochs": args.max_epochs or preset["max_epochs"],
        "cap_seconds": args.cap_seconds or preset["cap_seconds"],
        "data": args.data or os.environ.get("MNIST_NPZ"),
        "seed": args.seed,
        "latency_calls": LATENCY_CALLS,
    }
    output_dir = args.output_dir or Path("benchmarks/quick" if args.quick else "benchmarks")
    results = {}
    try:
        run_bookkeeping.ensure_writable(output_dir)  # before the training, not after it
        machine = describe_machine()
        for name in SETUPS:  # each in a fresh process, so its memory peak and threads are its own
            with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
                results[name] = pool.submit(benchmark_model, name, settings).result()
    except (OSError, ValueError) as error:  # an unwritable output directory, missing or bad data
        print(f"bench.py: error: {error}", file=sys.stderr)
        return 2
    project, original = results["project"], results["original"]
    ratios = {key: project[key] / original[key] if project[key] and original[key] else None for key, *_ in METRICS}
    report = {"machine": machine, "settings": settings, "models": results, "ratios": ratios}
    (output_dir / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (output_dir / REPORT_MD).write_text(markdown_report(report))
    print(markdown_report(report))
    print(f"saved {output_dir / REPORT_MD} and {output_dir / REPORT_JSON}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
