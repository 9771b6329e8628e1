"""The notebook's figures: each function returns a pyplot Figure and, given `path`, also saves it as a PNG."""

import math
import os

import matplotlib.pyplot as plt
import numpy as np

from data_creation import NUM_DIGITS, NUM_SUMS, as_class_indices, as_mnist_batch, decode_one_hot
from run_bookkeeping import read_log

HEADS = ("digit", "sum")
METRICS = ("loss", "accuracy")
CURVES = (("", "-", "training"), ("val_", "--", "validation"), ("val_live_", ":", "validation, live weights"))


def plot_class_frequencies(labels, title="Digit frequencies", path=None):
    """Each digit's share (%) of one array of labels, or of each of a dict of them, as bars side by side."""
    groups = labels if isinstance(labels, dict) else {None: labels}  # None: one unnamed set, no legend
    if not groups:
        raise ValueError("labels is an empty dict; expected at least one array of digit labels")
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    width = 0.8 / len(groups)
    for i, (name, values) in enumerate(groups.items()):
        values = np.atleast_1d(as_class_indices(values, "labels" if name is None else f"labels[{name!r}]", NUM_DIGITS))
        label = None if name is None else f"{name} ({len(values):,})"
        offset = (i - (len(groups) - 1) / 2) * width
        shares = 100 * np.bincount(values, minlength=NUM_DIGITS) / len(values)
        ax.bar(np.arange(NUM_DIGITS) + offset, shares, width, label=label)
    ax.axhline(100 / NUM_DIGITS, color="grey", linestyle="--", lw=1, label="balanced (10%)")
    ax.set(xticks=range(NUM_DIGITS), xlabel="digit", ylabel="share of the images (%)", title=title)
    ax.margins(y=0.2)  # room for the legend above the bars
    if None not in groups:
        ax.legend(loc="upper center", ncols=len(groups) + 1)
    return _finish(fig, path)


def plot_sample_grid(images, labels, rows=4, cols=8, seed=0, path=None):
    """A seeded random sample of `rows` x `cols` images (0-255 pixels), each titled with its digit label."""
    if rows < 1 or cols < 1:
        raise ValueError(f"rows and cols must be positive, got {rows} and {cols}")
    labels = _indices(labels, "labels", NUM_DIGITS, len(images))
    picked = np.random.default_rng(seed).choice(len(images), min(rows * cols, len(images)), replace=False)
    fig, axes = _image_grid(len(picked), cols)
    for ax, image, label in zip(axes, as_mnist_batch(np.asarray(images)[picked]), labels[picked], strict=True):
        _show_image(ax, image, str(label))
    return _finish(fig, path)


def plot_normalisation(images, path=None):
    """What the network's first layer, a division by 255, does to the pixels: their histogram and an image."""
    pixels = as_mnist_batch(images)[..., 0]
    counts, edges = np.histogram(pixels, bins=64, range=(-0.5, 255.5))  # 4 pixel values per bin
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), layout="constrained")
    panels = ((1, "raw pixels 0-255, as stored"), (255, "pixels / 255: what the network computes with"))
    for (histogram, example), (divisor, name) in zip(axes.T, panels, strict=True):
        histogram.stairs(counts, edges / divisor, fill=True)
        histogram.set(yscale="log", xlabel="pixel value", ylabel="pixels (log scale)", title=name)
        fig.colorbar(example.imshow(pixels[0] / divisor, cmap="gray", vmin=0, vmax=255 / divisor), ax=example)
        example.set(xticks=[], yticks=[], title=f"first image, 0-{255 // divisor}")
    return _finish(fig, path)


def plot_batch(inputs, targets, raw_images=None, count=8, path=None):
    """The first `count` examples of a batch, titled `digit + addend = sum`, below their `raw_images` if given."""
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    images = as_mnist_batch(inputs["image"], "inputs['image']")
    addends = _indices(decode_one_hot(inputs["addend"], "addend"), "addend", NUM_DIGITS, len(images))
    digits = _indices(decode_one_hot(targets["digit"], "digit"), "digit", NUM_DIGITS, len(images))
    sums = _indices(decode_one_hot(targets["sum"], "sum"), "sum", NUM_SUMS, len(images))
    rows = {"": images}
    if raw_images is not None:
        rows = {"raw": as_mnist_batch(raw_images, "raw_images"), "augmented": images}
        if len(rows["raw"]) != len(images):
            raise ValueError(f"raw_images has {len(rows['raw'])} images for a batch of {len(images)}")
    shown = min(count, len(images))
    fig, axes = _image_grid(len(rows) * shown, shown, height=1.6)
    for row_axes, (name, row_images) in zip(axes.reshape(len(rows), shown), rows.items(), strict=True):
        for ax, image in zip(row_axes, row_images, strict=False):
            _show_image(ax, image)
        row_axes[0].set_ylabel(name)
    for ax, digit, addend, total in zip(axes[:shown], digits, addends, sums, strict=False):
        ax.set_title(f"{digit} + {addend} = {total}", fontsize=9)
    return _finish(fig, path)


def plot_training_curves(history, path=None):
    """Loss and error rate per epoch of both heads on log scales, from a History, its .history dict or a CSV log."""
    if isinstance(history, str | os.PathLike):
        rows = read_log(history)
        if not rows:
            raise ValueError(f"the training log {history} lacks epochs: it is empty or missing")
        history = {key: [row[key] for row in rows] for key in rows[0]}
    logs = {key: np.asarray(values, dtype=float) for key, values in getattr(history, "history", history).items()}
    missing = [f"{head}_{metric}" for head in HEADS for metric in METRICS if f"{head}_{metric}" not in logs]
    if missing:
        raise ValueError(f"history lacks {missing}; it has {sorted(logs)}")
    lengths = {key: len(values) for key, values in logs.items()}
    if 0 in lengths.values() or len(set(lengths.values())) > 1:
        raise ValueError(f"history needs one value per epoch in every metric, got lengths {lengths}")
    epochs = np.asarray(logs.pop("epoch", getattr(history, "epoch", range(lengths["digit_loss"]))), int) + 1
    averaged = any(key.startswith("val_live_") for key in logs)  # train.py's log: validation of both weights
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for ax, metric in zip(axes, METRICS, strict=True):
        for head, color in zip(HEADS, ("tab:blue", "tab:orange"), strict=True):
            for prefix, style, split in CURVES:
                values = logs.get(f"{prefix}{head}_{metric}")
                if values is not None:
                    values = 1 - values if metric == "accuracy" else values
                    split = "validation, averaged weights" if prefix == "val_" and averaged else split
                    ax.plot(epochs, values, style, color=color, marker=".", label=f"{head} {split}")
        if "val_loss" in logs:  # the epoch whose weights train.py keeps
            best = epochs[np.argmin(logs["val_loss"])]
            ax.axvline(best, color="grey", linewidth=1, label=f"lowest validation loss (epoch {best})")
        ax.set(title="loss" if metric == "loss" else "error rate (1 - accuracy)", xlabel="epoch", yscale="log")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_confusion_matrix(matrix, labels=None, title="Confusion matrix", path=None):
    """Heatmap of a confusion matrix (rows true, columns predicted) with each nonzero count written in."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.size == 0:
        raise ValueError(f"matrix must be square and non-empty, got shape {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.number) or np.any(matrix < 0) or not np.any(matrix > 0):
        raise ValueError("matrix must hold non-negative counts, not all zero")
    size = len(matrix)
    labels = list(range(size)) if labels is None else list(labels)
    if len(labels) != size:
        raise ValueError(f"{len(labels)} labels for a {size}x{size} matrix")
    fig, ax = plt.subplots(figsize=(0.45 * size + 2, 0.45 * size + 1.5), layout="constrained")
    shown = ax.imshow(matrix, cmap="Blues", norm="log")  # a few errors show beside thousands; zeros stay blank
    fig.colorbar(shown, ax=ax, shrink=0.8, label="count (log scale)")
    _write_values(ax, shown, matrix, np.argwhere(matrix > 0), fontsize=8 if size <= 10 else 6)
    ax.set(xticks=range(size), yticks=range(size), xticklabels=labels, yticklabels=labels)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _finish(fig, path)


def plot_misclassified(
    images, true_digits, predicted_digits, addends, true_sums, predicted_sums, max_images=24, path=None
):
    """Gallery of (mis)classified examples: the digit above each image, the sum below, wrong ones in red."""
    if max_images < 1:
        raise ValueError(f"max_images must be positive, got {max_images}")
    images = as_mnist_batch(images)
    true_digits = _indices(true_digits, "true_digits", NUM_DIGITS, len(images))
    predicted_digits = _indices(predicted_digits, "predicted_digits", NUM_DIGITS, len(images))
    addends = _indices(addends, "addends", NUM_DIGITS, len(images))
    true_sums = _indices(true_sums, "true_sums", NUM_SUMS, len(images))
    predicted_sums = _indices(predicted_sums, "predicted_sums", NUM_SUMS, len(images))
    fig, axes = _image_grid(min(max_images, len(images)), cols=8, height=1.9)
    examples = zip(axes, images, true_digits, predicted_digits, addends, true_sums, predicted_sums, strict=False)
    for ax, image, digit, digit_guess, addend, total, total_guess in examples:
        _show_image(ax, image, f"digit {digit}, pred {digit_guess}", color="red" if digit != digit_guess else "black")
        sum_color = "red" if total != total_guess else "black"
        ax.set_xlabel(f"{digit}+{addend}={total}, pred {total_guess}", fontsize=9, color=sum_color)
    fig.suptitle(f"True and predicted digit and sum, wrong in red ({len(axes)} of {len(images)})")
    return _finish(fig, path)


def plot_outside_images(originals, preprocessed, predictions, names=None, true_digits=None, cols=5, path=None):
    """Each outside image (0-255 pixels, e.g. from `image_preprocessing.read_image`), in grey, beside the 28x28
    input the network saw; above them the true digit and the prediction (a probability only where it is under
    99.5%), below them the name; red where it is wrong."""
    preprocessed = as_mnist_batch(preprocessed, "preprocessed")
    count = len(preprocessed)
    names = [f"image {i + 1}" for i in range(count)] if names is None else list(names)
    truths = [None] * count if true_digits is None else list(true_digits)
    lengths = [len(originals), count, len(predictions), len(names), len(truths)]
    if len(set(lengths)) > 1:
        raise ValueError(f"originals, preprocessed, predictions, names, true_digits: {lengths}; expected one of each")
    cols = min(cols, count)
    rows = math.ceil(count / cols)
    fig = plt.figure(figsize=(2.0 * cols, 1.55 * rows), dpi=80, layout="constrained")  # 80 dpi: 43 photos under 300 kB
    cells = fig.subfigures(rows, cols, squeeze=False).flat  # one per image, for its two axes and their titles
    examples = zip(originals, preprocessed, predictions, names, truths, strict=True)
    for cell, (original, image, prediction, name, truth) in zip(cells, examples, strict=False):
        try:
            digit, addend, total = prediction["digit"], prediction["addend"], prediction["sum"]
            read = f"{digit}{_unsure(prediction['digit_probability'])}"
            added = f"{digit} + {addend} = {total}{_unsure(prediction['sum_probability'])}"
        except KeyError as missing:
            raise ValueError(f"prediction for {name!r} lacks {missing}") from None
        original = np.asarray(original, dtype=float)
        original_ax, input_ax = cell.subplots(1, 2)
        grey = original[..., :3].mean(axis=-1) if original.ndim == 3 else original
        original_ax.imshow(grey, cmap="gray", vmin=0, vmax=255)
        _show_image(input_ax, image)
        plt.setp((original_ax, input_ax), xticks=[], yticks=[])
        wrong = truth is not None and (digit != truth or total != truth + addend)
        head = f"digit {read}" if truth is None else f"true {truth} → {read}"
        cell.suptitle(f"{head}\n{added}", fontsize=10, color="red" if wrong else "black")
        cell.supxlabel(name, fontsize=8)
    return _finish(fig, path)


def plot_addition_table(table, path=None):
    """The network's 10x10 addition table (row = digit in the image, column = addend), wrong sums in red."""
    if np.shape(table) != (NUM_DIGITS, NUM_DIGITS):
        raise ValueError(f"table must be 10x10 (digit x addend), got shape {np.shape(table)}")
    table = as_class_indices(np.ravel(table), "table", NUM_SUMS).reshape(NUM_DIGITS, NUM_DIGITS)
    wrong = table != np.add.outer(np.arange(NUM_DIGITS), np.arange(NUM_DIGITS))
    fig, ax = plt.subplots(figsize=(6.5, 5.5), layout="constrained")
    shown = ax.imshow(table, cmap="Blues", vmin=0, vmax=NUM_SUMS - 1)
    fig.colorbar(shown, ax=ax, shrink=0.8, label="predicted sum")
    _write_values(ax, shown, table, np.argwhere(~wrong), fontsize=9)
    red_box = {"color": "white", "fontweight": "bold", "bbox": {"facecolor": "red", "edgecolor": "none"}}
    _write_values(ax, shown, table, np.argwhere(wrong), fontsize=9, **red_box)
    ax.set(xticks=range(NUM_DIGITS), yticks=range(NUM_DIGITS), xlabel="addend", ylabel="digit in the image")
    ax.set_title(f"Predicted sums: {wrong.sum()} of {table.size} wrong")
    return _finish(fig, path)


def plot_addend_values(values, path=None):
    """What a number_line sum head reads from each addend's one-hot: a (10 addends, 10 values) matrix of
    probabilities as a heatmap, in percent. A head that has learned to add has 100% on the diagonal."""
    values = np.asarray(values, dtype=float)
    if values.shape != (NUM_DIGITS, NUM_DIGITS) or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"values must be a 10x10 matrix of probabilities, got shape {values.shape}")
    if not np.allclose(values.sum(axis=1), 1, atol=1e-3):
        raise ValueError("each row of values (one addend) must sum to 1")
    percent = np.rint(100 * values)
    fig, ax = plt.subplots(figsize=(6.5, 5.5), layout="constrained")
    shown = ax.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(shown, ax=ax, shrink=0.8, label="probability (%)")
    _write_values(ax, shown, percent, np.argwhere(percent >= 1), fontsize=9)
    ax.set(xticks=range(NUM_DIGITS), yticks=range(NUM_DIGITS), xlabel="value read (how far the sum moves)")
    ax.set(ylabel="addend (one-hot input)", title="What the sum head reads from each addend")
    return _finish(fig, path)


def _image_grid(count, cols, height=1.5):
    """A figure with `count` tickless image axes in rows of up to `cols`; returns it and the axes, flat."""
    cols = min(cols, count)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(1.3 * cols, height * rows), layout="constrained")
    for ax in axes.flat[count:]:
        ax.remove()
    plt.setp(axes, xticks=[], yticks=[])
    return fig, axes.flat[:count]


def _show_image(ax, image, title="", color="black"):
    """Draw one (28, 28, 1) MNIST-style image, 0-255 grey, each pixel a square, under its title."""
    ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(title, color=color, fontsize=9)


def _unsure(probability):
    """A probability in brackets, or nothing where it rounds to 100%."""
    return f" ({probability:.0%})" if probability < 0.995 else ""


def _write_values(ax, image, matrix, cells, **text_kwargs):
    for row, column in cells:
        color = "white" if image.norm(matrix[row, column]) > 0.6 else "black"
        ax.text(column, row, f"{matrix[row, column]:g}", ha="center", va="center", **{"color": color, **text_kwargs})


def _indices(values, name, num_classes, count):
    values = np.atleast_1d(as_class_indices(values, name, num_classes))
    if len(values) != count:
        raise ValueError(f"{name} has {len(values)} values for {count} images")
    return values


def _finish(fig, path):
    if path is not None:
        fig.savefig(path, format="png", dpi=120, bbox_inches="tight")
    return fig
