"""Benchmark this project's network against the original project's architecture, side by side.

    python bench.py             # the full comparison (what `make bench` does), into benchmarks/
    python bench.py --quick     # train.py's quick subset and a short cap, into benchmarks/quick/

Both networks train on train.py's split, each the way its own project trained
it, one after the other in a fresh process each (neither inherits the other's
memory or threads), and are measured the same way. report.json and report.md
hold the results, their ratios (project / original) and the machine.
"""

import argparse
import datetime
import importlib.metadata
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

import train
from data_creation import IMAGE_SIZE, NUM_DIGITS, NUM_SUMS, MnistSumDataset, draw_addends, load_mnist
from evaluate_func import predict_digit_and_sum

THRESHOLDS = (0.994, 0.996)  # validation digit accuracies whose first crossing is timed
LATENCY_CALLS = 200  # after 20 untimed ones
FULL = dict(quick=False, max_epochs=train.EPOCHS, cap_seconds=720)  # 12 minutes of training per model at most
QUICK = dict(quick=True, max_epochs=2, cap_seconds=120)
REPORT_JSON, REPORT_MD = "report.json", "report.md"

# --------------------------------------------------------------------------- the original architecture


@keras.saving.register_keras_serializable(package="bench")
class ArgmaxOneHot(layers.Layer):
    """The most probable class as a one-hot vector, with no gradient: the original's sum head sees the
    chosen digit only. A registered layer, unlike a Lambda, loads with safe_mode=True."""

    def call(self, probabilities):
        return ops.one_hot(ops.argmax(probabilities, axis=-1), probabilities.shape[-1], dtype=self.compute_dtype)


def dense_block(x, units, name, dropout=0.0):
    """Dense -> batch norm -> ReLU [-> dropout]."""
    x = layers.Dense(units, name=f"{name}_dense")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    return layers.Dropout(dropout, name=f"{name}_dropout")(x) if dropout else x


def build_original_model():
    """The original project's network (347,277 parameters), with this project's input and output names.

    Two pairs of valid convolutions (32 5x5, then 64 3x3; batch norm, pooling and
    dropout after each pair), three dense blocks for the digit, and a sum head
    that sees only the arg-max digit next to the addend.
    """
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


# --------------------------------------------------------------------------- the two contestants


def setup_project(x_train, y_train, settings):
    """This project's network as train.py trains it (augmented images and re-drawn addends, AdamW with
    warm-up and cosine decay over the maximum epochs, the averaged weights validated and kept)."""
    data = train.training_data(x_train, y_train, train.BATCH_SIZE, settings["max_epochs"], settings["seed"])
    return train.compiled_model(len(data), settings["max_epochs"]), data, [keras.callbacks.SwapEMAWeights()]


def setup_original(x_train, y_train, settings):
    """The original architecture as the original project trained it (one fixed addend per image, no
    augmentation, Adam at its default learning rate, batch 128)."""
    addends = draw_addends(len(x_train), np.random.default_rng(settings["seed"]))
    data = MnistSumDataset(x_train, y_train, 128, addends=addends)
    model = build_original_model()
    model.compile(
        optimizer=keras.optimizers.Adam(),
        jit_compile=False,
        loss={"digit": "categorical_crossentropy", "sum": "categorical_crossentropy"},
        metrics={"digit": ["accuracy"], "sum": ["accuracy"]},
    )
    return model, data, []


SETUPS = {"project": setup_project, "original": setup_original}

# --------------------------------------------------------------------------- measurements


class TrainingClock(keras.callbacks.Callback):
    """Times every epoch and the first epoch whose validation digit accuracy reaches each threshold;
    stops training once `cap_seconds` have passed (checked after every step)."""

    def __init__(self, cap_seconds):
        super().__init__()
        self.cap_seconds, self.epochs, self.reached, self.capped = cap_seconds, [], {}, False

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps_ended = time.perf_counter()
        if self.steps_ended - self.started >= self.cap_seconds:
            self.capped = self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        now, accuracy = time.perf_counter(), float(logs["val_digit_accuracy"])
        self.epochs.append({"training_seconds": self.steps_ended - self.epoch_started, "val_digit_accuracy": accuracy})
        for threshold in THRESHOLDS:
            if accuracy >= threshold:
                self.reached.setdefault(threshold, now - self.started)


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
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return 1000 * float(np.median(seconds)), 1000 * float(np.percentile(seconds, 95))


def peak_memory_mib():
    """This process's resident-memory high-water mark (VmHWM; Linux only, else None)."""
    status = Path("/proc/self/status")
    lines = status.read_text().splitlines() if status.exists() else []
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmHWM:")), None)


def benchmark_model(name, settings):
    """Train and measure one model, "project" or "original", in this process; returns its results."""
    train.keep_freed_memory()
    keras.utils.set_random_seed(settings["seed"])
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = train.split_mnist(
        load_mnist(settings["data"]), settings["seed"], settings["quick"]
    )
    model, train_data, callbacks = SETUPS[name](x_train, y_train, settings)
    clock = TrainingClock(settings["cap_seconds"])
    print(f"bench.py: training the {name} model", flush=True)
    model.fit(
        train_data,
        validation_data=train.evaluation_data(x_val, y_val, settings["seed"], "validation"),
        epochs=settings["max_epochs"],
        callbacks=[*callbacks, clock],
        verbose=2,
    )
    test_data = train.evaluation_data(x_test, y_test, settings["seed"], "test")
    predict_digit_and_sum(model, x_test, test_data.addends)  # traces the graph for these batch shapes
    started = time.perf_counter()
    predicted = predict_digit_and_sum(model, x_test, test_data.addends)
    inference_seconds = time.perf_counter() - started
    latency = milliseconds_per_call(lambda: predict_digit_and_sum(model, x_test[0], 0), settings["latency_calls"])
    full_epochs = [epoch["training_seconds"] for epoch in clock.epochs[1:]] or [clock.epochs[0]["training_seconds"]]
    return {
        "parameters": model.count_params(),
        "flops_per_image": count_flops(model),
        "epochs_run": len(clock.epochs),
        "stopped_by": "time cap" if clock.capped else "max epochs",
        "training_images_per_second": len(x_train) / statistics.median(full_epochs),
        **{f"seconds_to_{threshold:.1%}": clock.reached.get(threshold) for threshold in THRESHOLDS},
        "final_val_digit_accuracy": clock.epochs[-1]["val_digit_accuracy"],
        "test_digit_accuracy": float(np.mean(predicted["digit"] == y_test)),
        "test_sum_accuracy": float(np.mean(predicted["sum"] == y_test + test_data.addends)),
        "inference_images_per_second": len(x_test) / inference_seconds,
        "latency_median_ms": latency[0],
        "latency_p95_ms": latency[1],
        "peak_memory_mib": peak_memory_mib(),
        "epochs": clock.epochs,
    }


def benchmark_in_fresh_process(name, settings):
    """`benchmark_model` in a newly spawned Python process, so its memory peak and threads are its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(benchmark_model, name, settings).result()


# --------------------------------------------------------------------------- reports

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
    return {
        **train.describe_cpu(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "libraries": ", ".join(
            f"{name} {importlib.metadata.version(name)}" for name in ("tensorflow", "keras", "numpy")
        ),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def build_report(machine, settings, results):
    """The JSON report: machine, settings, each model's description and results, and the ratios."""
    project, original = results["project"], results["original"]
    ratios = {key: project[key] / original[key] if project[key] and original[key] else None for key, *_ in METRICS}
    descriptions = {name: " ".join(setup.__doc__.split()) for name, setup in SETUPS.items()}
    models = {name: {"description": descriptions[name], **results[name]} for name in SETUPS}
    return {"machine": machine, "settings": settings, "models": models, "ratios": ratios}


def markdown_report(report):
    """The report as Markdown: machine, settings, models and the side-by-side table."""
    machine, settings, models = report["machine"], report["settings"], report["models"]

    def shown(value, form, missing="not reached"):
        return missing if value is None else form.format(value)

    lines = [
        "# Benchmark: this project's network against the original architecture",
        "",
        *(
            ["**Quick mode**: a small subset and a short cap; these numbers say little about the models.", ""]
            if settings["quick"]
            else []
        ),
        f"Machine: {machine['cpu']} ({machine['instruction_set']}), {machine['cores']} cores, load "
        f"{machine['load_average_at_start']} at the start; Python {machine['python']}, "
        f"{machine['libraries']}; {machine['date']}.",
        "",
        f"Each model trains for at most {settings['max_epochs']} epoch(s) and {settings['cap_seconds']:g} s in a "
        "fresh process on train.py's split; test figures use its last epoch's weights and train.py's test addends.",
        "",
        *(
            f"- **{name}** ({model['epochs_run']} epoch(s), stopped by {model['stopped_by']}): {model['description']}"
            for name, model in models.items()
        ),
        "",
        "| Metric | Project | Original | Project / original | Better |",
        "|---|--:|--:|--:|---|",
        *(
            f"| {label} | {shown(models['project'][key], form)} | {shown(models['original'][key], form)} "
            f"| {shown(report['ratios'][key], '{:.2f}', 'n/a')} | {better} |"
            for key, label, form, better in METRICS
        ),
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train.py's quick subset, 2 epochs, a 120 s cap")
    parser.add_argument("--cap-seconds", type=train.positive_int, help="training time cap per model")
    parser.add_argument("--max-epochs", type=train.positive_int, help="epochs per model at most")
    parser.add_argument("--data", metavar="PATH", help="mnist.npz (default: $MNIST_NPZ, else Keras' download)")
    parser.add_argument("--seed", type=int, default=train.SEED)
    parser.add_argument("--output-dir", type=Path, help="default: benchmarks (benchmarks/quick with --quick)")
    return parser.parse_args(argv)


def main(argv=None):
    """Benchmark both models and write the reports; 0 on success, 2 on bad data or output directory."""
    args = parse_args(argv)
    chosen = {"cap_seconds": args.cap_seconds, "max_epochs": args.max_epochs}
    settings = {
        **(QUICK if args.quick else FULL),
        **{key: value for key, value in chosen.items() if value},
        "data": args.data or os.environ.get("MNIST_NPZ"),
        "seed": args.seed,
        "latency_calls": LATENCY_CALLS,
    }
    output_dir = args.output_dir or Path("benchmarks/quick" if args.quick else "benchmarks")
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
    (output_dir / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (output_dir / REPORT_MD).write_text(markdown_report(report))
    print(markdown_report(report))
    print(f"saved {output_dir / REPORT_MD} and {output_dir / REPORT_JSON}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
