"""Load the saved model safely, predict digits and sums, and evaluate them.

    model = load_saved_model("model.zip")
    predict_digit_and_sum(model, image, 7)          # one (28, 28) image, addend 7
    evaluate_model(model, x_test, y_test, addends)  # accuracies, reports, mistakes

Images are MNIST-like pixels (0-255, white on black); `image_preprocessing.preprocess_image`
turns photos and scans of a handwritten digit into that.
"""

import contextlib
import hashlib
import json
import os
import tempfile
import weakref
import zipfile
import zlib

import keras
import numpy as np
from scipy.ndimage import shift as shift_image
from sklearn.metrics import classification_report, confusion_matrix

from data_creation import (
    EVALUATION_BATCH,
    NUM_DIGITS,
    NUM_SUMS,
    as_class_indices,
    as_mnist_batch,
    encode_addends,
    one_per_image,
    sum_labels,
)
from network_architecture import AddDistributions  # noqa: F401  (registered: saved models that use it load)

MODEL_MEMBER = "model.keras"
METADATA_MEMBER = "metadata.json"
MAX_UNCOMPRESSED_BYTES = 256 * 2**20  # the model is ~2 MB; anything near this is a zip bomb
# Below this top digit probability an input "does not look much like a digit": 0.5% of MNIST's validation digits
# fall below it with the committed model (experiments/digit_or_not.py chose and measured it; EXPERIMENTS.md).
DIGIT_CONFIDENCE_FLOOR = 0.70
NO_SHIFT = ((0, 0),)
# Test-time augmentation: the image as it is and moved one pixel up, down, left and right; (rows, columns).
ONE_PIXEL_SHIFTS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))

# --------------------------------------------------------------------------- loading


def load_saved_model(path="model.zip"):
    """Load the model from `model.zip` (or a bare `.keras` file) with `safe_mode=True`.

    The archive is treated as untrusted: only `model.keras` and `metadata.json`
    are read, members with absolute paths, `..`, links or absurd sizes are
    refused, the model is unpacked into a private temporary directory, and its
    SHA-256 must match the one train.py recorded. Whatever is wrong with the
    file, the error is a ValueError (FileNotFoundError when it is missing) that names it.
    """
    path = _model_file(path)
    if path.endswith(".keras"):
        return _load_keras_file(path, path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"model file {path!r} is neither a model.zip archive nor a .keras file")
    with _damage_reported(path), zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory() as private_dir:
        metadata = _checked_metadata(archive, path)
        keras_path = os.path.join(private_dir, MODEL_MEMBER)
        with archive.open(MODEL_MEMBER) as source, open(keras_path, "wb") as target:
            target.write(source.read())
        if "model_sha256" not in metadata:
            raise ValueError(f"model archive {path!r}: metadata.json records no model_sha256")
        if file_sha256(keras_path) != metadata["model_sha256"]:
            raise ValueError(
                f"model archive {path!r}: model.keras does not match its recorded SHA-256 (tampered or corrupt)"
            )
        return _load_keras_file(keras_path, path)


def read_metadata(path="model.zip"):
    """The training metadata (`metadata.json`) stored in model.zip, as a dict; checked like `load_saved_model`."""
    path = _model_file(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"model file {path!r} is not a model.zip archive")
    with _damage_reported(path), zipfile.ZipFile(path) as archive:
        return _checked_metadata(archive, path)


def _model_file(path):
    """`path` as a string, after checking that it is an existing file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"model file {path!r} is a directory")
    return path


@contextlib.contextmanager
def _damage_reported(path):
    """Turn zipfile's and zlib's errors for damaged bytes into a ValueError that names the archive."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"model archive {path!r} is corrupt: {error}") from None


def _checked_metadata(archive, path):
    """Check the archive's members (names, links, sizes) and return its metadata.json as a dict."""
    members = archive.infolist()
    names = {member.filename for member in members}
    if not {MODEL_MEMBER, METADATA_MEMBER} <= names:
        raise ValueError(
            f"model archive {path!r} must contain {MODEL_MEMBER} and {METADATA_MEMBER}, has {sorted(names)}"
        )
    for member in members:
        name = member.filename
        if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/") or ":" in name:
            raise ValueError(f"model archive {path!r}: refusing member with an unsafe path {name!r}")
        if (member.external_attr >> 16) & 0o170000 == 0o120000:
            raise ValueError(f"model archive {path!r}: refusing member {name!r}, which is a symbolic link")
    total = sum(member.file_size for member in members)
    if total > MAX_UNCOMPRESSED_BYTES:
        raise ValueError(
            f"model archive {path!r} unpacks to {total:,} bytes, over the {MAX_UNCOMPRESSED_BYTES:,} limit"
        )
    try:
        metadata = json.loads(archive.read(METADATA_MEMBER))
    except ValueError as error:  # not UTF-8, or not JSON
        raise ValueError(f"model archive {path!r}: metadata.json is not JSON: {error}") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"model archive {path!r}: metadata.json holds a {type(metadata).__name__}, not an object")
    return metadata


def _load_keras_file(keras_path, shown_path):
    try:
        return keras.saving.load_model(keras_path, safe_mode=True, compile=False)
    except ValueError as error:
        raise ValueError(f"model file {shown_path!r} could not be loaded safely: {error}") from None
    except (OSError, zipfile.BadZipFile, zlib.error, KeyError) as error:
        raise ValueError(f"model file {shown_path!r} is not a readable Keras model: {error}") from None


def file_sha256(path):
    """SHA-256 of a file's bytes, as hex."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# --------------------------------------------------------------------------- prediction

_compiled_calls = weakref.WeakKeyDictionary()


def _compiled_call(model):
    """The model's inference call, traced once: for a few images, `model.predict` takes far longer to set
    up its data pipeline on every call than the network takes to compute."""
    if model not in _compiled_calls:
        import tensorflow as tf  # the TensorFlow backend's graph compiler

        def infer(inputs):
            return model(inputs, training=False)

        _compiled_calls[model] = tf.function(infer, reduce_retracing=True, autograph=False)
    return _compiled_calls[model]


def predict_digit_and_sum(model, images, addends, shifts=NO_SHIFT):
    """Predict the digit in each image and its sum with the addend.

    `images`: one (28, 28) image or a batch, MNIST pixels (0-255, white on
    black); `addends`: one int 0-9 for every image, or one per image; `shifts`:
    the (rows, columns) by which each image is moved, black filling in, the
    probabilities being averaged over them (e.g. ONE_PIXEL_SHIFTS). Returns
    a dict of `digit` and `sum` (int arrays), their probabilities
    `digit_probability` (N, 10) and `sum_probability` (N, 19), and
    `looks_like_a_digit` (bool): the top digit probability reaches
    DIGIT_CONFIDENCE_FLOOR. Scribbles, dots and letters often fall below it.
    """
    images = as_mnist_batch(images)
    addends = np.atleast_1d(as_class_indices(addends, "addends", NUM_DIGITS))
    if len(addends) == 1:  # one addend for every image
        addends = np.repeat(addends, len(images))
    addends = one_per_image(addends, "addends", NUM_DIGITS, len(images))
    probabilities = [
        _predict_probabilities(model, shift_image(images, (0, *offset, 0), order=0), addends) for offset in shifts
    ]
    digit_probability, sum_probability = (np.mean(heads, axis=0) for heads in zip(*probabilities, strict=True))
    return {
        "digit": digit_probability.argmax(axis=1),
        "sum": sum_probability.argmax(axis=1),
        "digit_probability": digit_probability,
        "sum_probability": sum_probability,
        "looks_like_a_digit": digit_probability.max(axis=1) >= DIGIT_CONFIDENCE_FLOOR,
    }


def _predict_probabilities(model, images, addends):
    """The digit's and the sum's probabilities for checked images (N, 28, 28, 1) and addends (N,)."""
    call = _compiled_call(model)
    batches = [slice(start, start + EVALUATION_BATCH) for start in range(0, len(images), EVALUATION_BATCH)]
    outputs = [call({"image": images[batch], "addend": encode_addends(addends[batch])}) for batch in batches]
    return tuple(
        np.concatenate([keras.ops.convert_to_numpy(output[head]) for output in outputs]) for head in ("digit", "sum")
    )


# --------------------------------------------------------------------------- evaluation


def evaluate_model(model, images, digits, addends):
    """Accuracy, loss, confusion matrix and report of both outputs on a labelled set, and the mistakes.

    Returns a dict: `digit_accuracy`, `sum_accuracy`, `digit_loss`, `sum_loss`,
    `digit_confusion` (10x10), `sum_confusion` (19x19), `digit_report` and
    `sum_report` (scikit-learn classification reports, text), `consistency`
    (share of predicted sum == predicted digit + addend), `misclassified`
    (indices where the digit or the sum is wrong) and `predictions`.
    """
    images, digits = _labelled_images(images, digits)
    addends = np.atleast_1d(as_class_indices(addends, "addends", NUM_DIGITS))
    true_sums = sum_labels(digits, addends)
    predictions = predict_digit_and_sum(model, images, addends)
    results = {"predictions": predictions}
    wrong = np.zeros(len(digits), bool)
    for head, truth, classes in (("digit", digits, NUM_DIGITS), ("sum", true_sums, NUM_SUMS)):
        predicted, probabilities = predictions[head], predictions[f"{head}_probability"]
        wrong |= predicted != truth
        loss = keras.losses.categorical_crossentropy(keras.ops.one_hot(truth, classes), probabilities)
        results[f"{head}_accuracy"] = float(np.mean(predicted == truth))
        results[f"{head}_loss"] = float(keras.ops.mean(loss))
        results[f"{head}_confusion"] = confusion_matrix(truth, predicted, labels=range(classes))
        results[f"{head}_report"] = classification_report(
            truth, predicted, labels=range(classes), digits=4, zero_division=0
        )
    results["consistency"] = float(np.mean(predictions["sum"] == predictions["digit"] + addends))
    results["misclassified"] = np.flatnonzero(wrong)
    return results


def read_addend_values(model):
    """What a model with the number_line sum head reads from each addend: a (10 addends, 10 values) matrix
    of probabilities, row a being how likely the head takes the one-hot of a to mean 0, 1, ..., 9."""
    names = {layer.name for layer in model.layers}
    if not {"addend", "addend_value"} <= names:
        raise ValueError(f"model {model.name!r} has no number_line sum head (no 'addend_value' layer)")
    reader = keras.Model(model.get_layer("addend").output, model.get_layer("addend_value").output)
    return keras.ops.convert_to_numpy(reader(np.eye(NUM_DIGITS, dtype="float32")))


def _labelled_images(images, digits):
    """Checked images (N, 28, 28, 1) and their digits (N,): one digit per image."""
    images = as_mnist_batch(images)
    return images, one_per_image(digits, "digits", NUM_DIGITS, len(images))


def addition_table(model, images, digits, addends=range(NUM_DIGITS)):
    """10x10 table of predicted sums, row = digit, column = addend, for the first image of each digit 0-9."""
    images, digits = _labelled_images(images, digits)
    missing = sorted(set(range(NUM_DIGITS)) - set(digits.tolist()))
    if missing:
        raise ValueError(f"the addition table needs an image of every digit 0-9; digits has none of {missing}")
    firsts = [int(np.flatnonzero(digits == digit)[0]) for digit in range(NUM_DIGITS)]
    addends = list(addends)
    batch = np.repeat(images[firsts], len(addends), axis=0)
    predicted = predict_digit_and_sum(model, batch, np.tile(addends, NUM_DIGITS))["sum"]
    return predicted.reshape(NUM_DIGITS, len(addends))
