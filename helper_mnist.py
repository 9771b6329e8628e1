"""The notebook's figures: data, batches, training curves, confusion matrices, mistakes and outside images."""

import csv
import math
import os
from collections.abc import Mapping

import keras
import matplotlib.pyplot as plt
import numpy as np

from data_creation import NUM_DIGITS, NUM_SUMS, as_class_indices, as_mnist_batch, decode_one_hot

# --------------------------------------------------------------------------- plotting
#
# Every plot function returns its Figure and, given `path`, also saves it as a PNG.
# The figures come from pyplot, so a notebook shows them inline and a script can
# `plt.show()` them; a notebook cell that ends in such a call shows the figure
# twice unless it assigns it (`fig = plot_...(...)`) or ends in `;`.

HEADS = ("digit", "sum")
CURVES = (("", "-", "training"), ("val_", "--", "validation"), ("val_live_", ":", "validation, live weights"))
PREDICTION_KEYS = ("digit", "digit_probability", "addend", "sum", "sum_probability")
SAVE_DPI = 120


def plot_class_frequencies(labels, title="Digit frequencies", path=None):
    """Bar chart of how often each digit 0-9 occurs.

    `labels` is one array of digit labels or a dict of them to compare side by
    side, e.g. `{"train": y_train, "test": y_test}`. A dashed line marks each
    set's perfectly balanced count (a tenth of it).
    """
    groups = dict(labels) if isinstance(labels, Mapping) else {None: labels}
    if not groups:
        raise ValueError("labels is an empty dict; expected at least one array of digit labels")
    fig, axes = _subplots(figsize=(8, 4))
    ax = axes[0, 0]
    digits = np.arange(NUM_DIGITS)
    width = 0.8 / len(groups)
    for i, (name, values) in enumerate(groups.items()):
        what = "labels" if name is None else f"labels[{name!r}]"
        values = np.atleast_1d(as_class_indices(values, what, NUM_DIGITS))
        label = None if name is None else f"{name} ({len(values):,})"
        offset = (i - (len(groups) - 1) / 2) * width
        bars = ax.bar(digits + offset, np.bincount(values, minlength=NUM_DIGITS), width, label=label)
        ax.axhline(len(values) / NUM_DIGITS, color=bars.patches[0].get_facecolor(), linestyle="--", lw=1)
    ax.set(xticks=digits, xlabel="digit", ylabel="count", title=title)
    if None not in groups:
        ax.legend()
    return _finish(fig, path)


def plot_sample_grid(images, labels, rows=4, cols=8, seed=0, path=None):
    """A seeded random sample of `rows` x `cols` images (0-255 pixels), each titled with its digit label."""
    if rows < 1 or cols < 1:
        raise ValueError(f"rows and cols must be positive, got {rows} and {cols}")
    images = np.asarray(images)
    labels = _indices(labels, "labels", NUM_DIGITS, len(images))
    picked = np.random.default_rng(seed).choice(len(images), min(rows * cols, len(images)), replace=False)
    fig, axes = _image_grid(len(picked), cols)
    for ax, image, label in zip(axes, _pixels(images[picked]), labels[picked], strict=True):
        _show_image(ax, image, str(label))
    return _finish(fig, path)


def plot_normalisation(images, path=None):
    """What dividing the pixels by 255 does: the same histogram on a 0-1 axis, the same image.

    The network scales its input itself (its first layer is `Rescaling(1 / 255)`),
    so the data stays as raw 0-255 pixels. A sample is plenty, e.g. `x_train[:2000]`.
    """
    pixels = _pixels(images)
    counts, edges = np.histogram(pixels, bins=64, range=(-0.5, 255.5))  # 4 pixel values per bin
    fig, axes = _subplots(2, 2, figsize=(10, 6.5))
    panels = ((1, "raw pixels 0-255, as stored"), (255, "pixels / 255: what the network computes with"))
    for column, (divisor, name) in enumerate(panels):
        histogram, example = axes[:, column]
        histogram.stairs(counts, edges / divisor, fill=True)
        histogram.set(yscale="log", xlabel="pixel value", ylabel="pixels (log scale)", title=name)
        shown = example.imshow(pixels[0] / divisor, cmap="gray", vmin=0, vmax=255 / divisor)
        fig.colorbar(shown, ax=example)
        example.set(xticks=[], yticks=[], title=f"first image, 0-{255 // divisor}")
    return _finish(fig, path)


def plot_batch(inputs, targets, raw_images=None, count=8, path=None):
    """The first `count` examples of one `MnistSumDataset` batch, titled `digit + addend = sum`.

    `inputs` and `targets` are the batch's dicts ({"image", "addend"} and
    {"digit", "sum"}, one-hot). Given `raw_images`, the same examples before
    augmentation, they form a top row above the augmented ones.
    """
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    images = _pixels(inputs["image"], "inputs['image']")
    addends, digits, sums = (
        _indices(decode_one_hot(batch[key], key), key, classes, len(images))
        for batch, key, classes in (
            (inputs, "addend", NUM_DIGITS),
            (targets, "digit", NUM_DIGITS),
            (targets, "sum", NUM_SUMS),
        )
    )
    rows = {"": images}
    if raw_images is not None:
        raw_images = _pixels(raw_images, "raw_images")
        if len(raw_images) != len(images):
            raise ValueError(f"raw_images has {len(raw_images)} images for a batch of {len(images)}")
        rows = {"raw": raw_images, "augmented": images}
    shown = min(count, len(images))
    fig, axes = _subplots(len(rows), shown, figsize=(1.3 * shown, 1.6 * len(rows)))
    for row_axes, (name, row_images) in zip(axes, rows.items(), strict=True):
        for ax, image in zip(row_axes, row_images, strict=False):
            _show_image(ax, image)
        row_axes[0].set_ylabel(name)
    for ax, digit, addend, total in zip(axes[0], digits, addends, sums, strict=False):
        ax.set_title(f"{digit} + {addend} = {total}", fontsize=9)
    return _finish(fig, path)


def plot_training_curves(history, path=None):
    """Loss and error rate (1 - accuracy) per epoch of both heads, log scales: training solid, validation
    dashed (the averaged weights) and dotted (the live weights, `val_live_*`, where the log has them).

    `history` is the History `model.fit` returns, a dict of per-epoch lists
    keyed like Keras' logs (`digit_loss`, `val_sum_accuracy`, ...), or the path
    of the CSV log that train.py writes (training_history.log). On a log scale
    the last epochs' step from 0.4% to 0.3% error is as visible as the first
    epoch's from 10% to 1%.
    """
    epochs, logs = _history_logs(history)
    fig, axes = _subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes[0], ("loss", "accuracy"), strict=True):
        for head, color in zip(HEADS, ("tab:blue", "tab:orange"), strict=True):
            for prefix, style, split in CURVES:
                if f"{prefix}{head}_{metric}" in logs:
                    values = logs[f"{prefix}{head}_{metric}"]  # float arrays (_history_logs)
                    values = 1 - values if metric == "accuracy" else values
                    ax.plot(epochs, values, style, color=color, marker=".", label=f"{head} {split}")
        ax.set(title="loss" if metric == "loss" else "error rate (1 - accuracy)", xlabel="epoch", yscale="log")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend()
    return _finish(fig, path)


def plot_confusion_matrix(matrix, labels=None, title="Confusion matrix", path=None):
    """Heatmap of a confusion matrix (rows true, columns predicted) with each nonzero count written in.

    Colours follow a log scale and empty cells stay white, so a handful of
    errors still shows next to a diagonal of thousands. Fits the 10x10 digit
    and the 19x19 sum matrices alike.
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.size == 0:
        raise ValueError(f"matrix must be square and non-empty, got shape {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.number) or np.any(matrix < 0) or not np.any(matrix > 0):
        raise ValueError("matrix must hold non-negative counts, not all zero")
    size = len(matrix)
    labels = list(range(size)) if labels is None else list(labels)
    if len(labels) != size:
        raise ValueError(f"{len(labels)} labels for a {size}x{size} matrix")
    fig, axes = _subplots(figsize=(0.45 * size + 2, 0.45 * size + 1.5))
    ax = axes[0, 0]
    shown = ax.imshow(matrix, cmap="Blues", norm="log")  # zeros have no logarithm: they stay blank
    fig.colorbar(shown, ax=ax, shrink=0.8, label="count (log scale)")
    _write_values(ax, shown, matrix, np.argwhere(matrix > 0), fontsize=8 if size <= 10 else 6)
    ticks = range(size)
    ax.set(xticks=ticks, yticks=ticks, xticklabels=labels, yticklabels=labels)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _finish(fig, path)


def plot_misclassified(
    images, true_digits, predicted_digits, addends, true_sums, predicted_sums, max_images=24, path=None
):
    """Gallery of (mis)classified examples: the digit above each image, the sum below, wrong ones in red."""
    if max_images < 1:
        raise ValueError(f"max_images must be positive, got {max_images}")
    images = _pixels(images)
    count = len(images)
    true_digits = _indices(true_digits, "true_digits", NUM_DIGITS, count)
    predicted_digits = _indices(predicted_digits, "predicted_digits", NUM_DIGITS, count)
    addends = _indices(addends, "addends", NUM_DIGITS, count)
    true_sums = _indices(true_sums, "true_sums", NUM_SUMS, count)
    predicted_sums = _indices(predicted_sums, "predicted_sums", NUM_SUMS, count)
    shown = min(max_images, count)
    fig, axes = _image_grid(shown, cols=8, height=1.9)
    for i, ax in enumerate(axes):
        digit_wrong = true_digits[i] != predicted_digits[i]
        sum_wrong = true_sums[i] != predicted_sums[i]
        _show_image(
            ax,
            images[i],
            f"digit {true_digits[i]}, pred {predicted_digits[i]}",
            color="red" if digit_wrong else "black",
        )
        ax.set_xlabel(
            f"{true_digits[i]}+{addends[i]}={true_sums[i]}, pred {predicted_sums[i]}",
            fontsize=9,
            color="red" if sum_wrong else "black",
        )
    fig.suptitle(f"True and predicted digit and sum, wrong in red ({shown} of {count})")
    return _finish(fig, path)


def plot_outside_images(originals, preprocessed, predictions, names=None, true_digits=None, cols=4, path=None):
    """A grid of outside images, `cols` to a row: each original beside the 28x28 input the network saw,
    titled with the prediction `digit (p) + addend = sum (p)`; red where it differs from `true_digits`.

    `originals` are arrays (grey or RGB, any size) or PIL images;
    `preprocessed` the matching 28x28 MNIST-style inputs (0-255, white on
    black); `predictions` one dict per image with the keys of predict.py's JSON
    output: digit, digit_probability, addend, sum and sum_probability.
    """
    preprocessed = _pixels(preprocessed, "preprocessed")
    count = len(preprocessed)
    names = [f"image {i + 1}" for i in range(count)] if names is None else list(names)
    truths = [None] * count if true_digits is None else list(true_digits)
    if not len(originals) == len(predictions) == len(names) == len(truths) == count:
        raise ValueError(
            f"{len(originals)} originals, {count} preprocessed images, {len(predictions)} predictions, "
            f"{len(names)} names and {len(truths)} true digits: expected one of each per image"
        )
    cols = min(cols, count)
    fig, axes = _subplots(math.ceil(count / cols), 2 * cols, figsize=(2.6 * cols, 1.6 * math.ceil(count / cols)))
    for ax in axes.flat[2 * count :]:
        ax.remove()
    pairs = zip(axes.flat[0::2], axes.flat[1::2], originals, preprocessed, predictions, names, truths, strict=False)
    for original_ax, input_ax, original, image, prediction, name, truth in pairs:
        missing = [key for key in PREDICTION_KEYS if key not in prediction]
        if missing:
            raise ValueError(f"prediction for {name!r} lacks {missing}")
        answer = (
            f"{prediction['digit']} ({prediction['digit_probability']:.0%}) + {prediction['addend']}"
            f" = {prediction['sum']} ({prediction['sum_probability']:.0%})"
        )
        wrong = truth is not None and truth != prediction["digit"]
        _show_image(original_ax, np.asarray(original), str(name), vmin=None, vmax=None)
        original_ax.title.set_fontsize(7)
        _show_image(input_ax, image, answer, color="red" if wrong else "black")
    return _finish(fig, path)


def plot_addition_table(table, path=None):
    """The network's 10x10 addition table (row = digit in the image, column = addend), wrong sums in red."""
    table = np.asarray(table)
    if table.shape != (NUM_DIGITS, NUM_DIGITS):
        raise ValueError(f"table must be 10x10 (digit x addend), got shape {table.shape}")
    table = as_class_indices(table.ravel(), "table", NUM_SUMS).reshape(table.shape)
    wrong = table != np.add.outer(np.arange(NUM_DIGITS), np.arange(NUM_DIGITS))
    fig, axes = _subplots(figsize=(6.5, 5.5))
    ax = axes[0, 0]
    shown = ax.imshow(table, cmap="Blues", vmin=0, vmax=NUM_SUMS - 1)
    fig.colorbar(shown, ax=ax, shrink=0.8, label="predicted sum")
    _write_values(ax, shown, table, np.argwhere(~wrong), fontsize=9)
    _write_values(
        ax,
        shown,
        table,
        np.argwhere(wrong),
        fontsize=9,
        color="white",
        fontweight="bold",
        bbox={"facecolor": "red", "edgecolor": "none"},
    )
    ticks = range(NUM_DIGITS)
    ax.set(
        xticks=ticks,
        yticks=ticks,
        xlabel="addend",
        ylabel="digit in the image",
        title=f"Predicted sums: {wrong.sum()} of {table.size} wrong",
    )
    return _finish(fig, path)


def _subplots(rows=1, cols=1, **kwargs):
    """`plt.subplots` with a 2-D array of axes and constrained layout."""
    return plt.subplots(rows, cols, squeeze=False, layout="constrained", **kwargs)


def _image_grid(count, cols, height=1.5):
    """A figure with `count` image axes in rows of up to `cols`; returns it and the axes, flat."""
    cols = min(cols, count)
    rows = math.ceil(count / cols)
    fig, axes = _subplots(rows, cols, figsize=(1.3 * cols, height * rows))
    for ax in axes.flat[count:]:
        ax.remove()
    return fig, axes.flat[:count]


def _show_image(ax, image, title="", color="black", **imshow_kwargs):
    """Draw an image without ticks: 0-255 grey (MNIST style) unless `imshow_kwargs` say otherwise."""
    ax.imshow(image, **{"cmap": "gray", "vmin": 0, "vmax": 255, **imshow_kwargs})
    ax.set_title(title, color=color, fontsize=9)
    ax.set(xticks=[], yticks=[])


def _write_values(ax, image, matrix, cells, fontsize, **text_kwargs):
    """Write `matrix`'s value in each (row, column) of `cells`, white on dark colours, black on light."""
    for row, column in cells:
        value = matrix[row, column]
        color = "white" if image.norm(value) > 0.6 else "black"
        ax.text(
            column, row, f"{value:g}", ha="center", va="center", fontsize=fontsize, **{"color": color, **text_kwargs}
        )


def _pixels(images, name="images"):
    """Validated 0-255 MNIST images as a float (N, 28, 28) array."""
    return as_mnist_batch(images, name)[..., 0]


def _indices(values, name, num_classes, count):
    """Validated class indices, exactly one per image."""
    values = np.atleast_1d(as_class_indices(values, name, num_classes))
    if len(values) != count:
        raise ValueError(f"{name} has {len(values)} values for {count} images")
    return values


def _history_logs(history):
    """1-based epoch numbers and {metric: per-epoch array} of a History, a dict of lists or a CSV log."""
    if isinstance(history, str | os.PathLike):
        with open(history, newline="") as handle:
            rows = list(csv.DictReader(handle))
        logs = {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else ())}
    else:
        logs = history.history if isinstance(history, keras.callbacks.History) else dict(history)
    logs = {key: np.asarray(values, dtype=float) for key, values in logs.items()}
    missing = [
        f"{head}_{metric}" for head in HEADS for metric in ("loss", "accuracy") if f"{head}_{metric}" not in logs
    ]
    if missing:
        raise ValueError(f"history lacks {missing}; it has {sorted(logs)}")
    epochs = len(logs["digit_loss"])
    if epochs == 0 or any(len(values) != epochs for values in logs.values()):
        raise ValueError(
            f"history needs one value per epoch in every metric, got lengths "
            f"{ {key: len(values) for key, values in logs.items()} }"
        )
    return np.asarray(logs.pop("epoch", getattr(history, "epoch", range(epochs)))) + 1, logs


def _finish(fig, path):
    """Save `fig` as a PNG at `path`, when one is given, and return it."""
    if path is not None:
        fig.savefig(path, format="png", dpi=SAVE_DPI, bbox_inches="tight")
    return fig
