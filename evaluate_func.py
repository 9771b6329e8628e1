"""Load the saved model safely, predict digits and sums, and evaluate them.

    model = load_saved_model("model.zip")
    predict_digit_and_sum(model, image, 7)          # one (28, 28) image, addend 7
    evaluate_model(model, x_test, y_test, addends)  # accuracies, reports, mistakes

Images are MNIST-like pixels (0-255, white on black); `preprocess_image` turns
photos and scans of a handwritten digit into that.
"""

import hashlib
import json
import os
import tempfile
import warnings
import weakref
import zipfile

import keras
import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage
from sklearn.metrics import classification_report, confusion_matrix

from data_creation import IMAGE_SIZE, NUM_DIGITS, NUM_SUMS, as_class_indices, encode_addends, sum_labels

MODEL_MEMBER = "model.keras"
METADATA_MEMBER = "metadata.json"
MAX_UNCOMPRESSED_BYTES = 256 * 2**20  # the model is ~2 MB; anything near this is a zip bomb
# Images per compiled call; test-set images/s measured here: 128 -> 7,500, 256 -> 7,900, 512 -> 9,000, 1,024 -> 8,700.
PREDICT_BATCH = 512

# --------------------------------------------------------------------------- loading


def load_saved_model(path="model.zip"):
    """Load the model from `model.zip` (or a bare `.keras` file) with `safe_mode=True`.

    The archive is treated as untrusted: only `model.keras` and `metadata.json`
    are read, members with absolute paths, `..` or links and absurd sizes are
    refused, the model is unpacked into a private temporary directory, and its
    SHA-256 must match the one `train.py` recorded in the metadata.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"model file {path!r} is a directory")
    if path.endswith(".keras"):
        return _load_keras_file(path, path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"model file {path!r} is neither a model.zip archive nor a .keras file")
    try:
        return _load_archive(path)
    except zipfile.BadZipFile as error:
        raise ValueError(f"model archive {path!r} is corrupt: {error}") from None


def _load_archive(path):
    with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory() as private_dir:
        _check_archive(archive, path)
        metadata = json.loads(archive.read(METADATA_MEMBER))
        keras_path = os.path.join(private_dir, MODEL_MEMBER)
        with archive.open(MODEL_MEMBER) as source, open(keras_path, "wb") as target:
            target.write(source.read())
        expected = metadata.get("model_sha256")
        if expected is None:
            raise ValueError(f"model archive {path!r}: metadata.json records no model_sha256")
        if file_sha256(keras_path) != expected:
            raise ValueError(
                f"model archive {path!r}: model.keras does not match its recorded SHA-256 (tampered or corrupt)"
            )
        return _load_keras_file(keras_path, path)


def read_metadata(path="model.zip"):
    """The training metadata (`metadata.json`) stored in model.zip, as a dict."""
    with zipfile.ZipFile(path) as archive:
        _check_archive(archive, os.fspath(path))
        return json.loads(archive.read(METADATA_MEMBER))


def _check_archive(archive, path):
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


def _load_keras_file(keras_path, shown_path):
    try:
        return keras.saving.load_model(keras_path, safe_mode=True, compile=False)
    except ValueError as error:
        raise ValueError(f"model file {shown_path!r} could not be loaded safely: {error}") from None
    except (OSError, zipfile.BadZipFile, KeyError) as error:
        raise ValueError(f"model file {shown_path!r} is not a readable Keras model: {error}") from None


def file_sha256(path):
    """SHA-256 of a file's bytes, as hex."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# --------------------------------------------------------------------------- prediction


def as_mnist_batch(images, name="images"):
    """Check MNIST-convention pixels (0-255, white on black) and return float32 (N, 28, 28, 1).

    Accepts one image (28, 28) / (28, 28, 1) or a batch (N, 28, 28) / (N, 28, 28, 1).
    """
    try:
        array = np.asarray(images)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{name} is not a numeric array: {error}") from None
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name} must hold numbers 0-255, got dtype {array.dtype}")
    if array.shape[-1:] == (1,) and array.ndim in (3, 4):
        array = array[..., 0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{name} must have shape (28, 28), (N, 28, 28) or (N, 28, 28, 1), got {np.shape(images)}")
    if len(array) == 0:
        raise ValueError(f"{name} is an empty batch")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite pixels")
    if array.min() < 0 or array.max() > 255:
        raise ValueError(f"{name} must hold pixels 0-255, got {array.min():g} to {array.max():g}")
    return array.astype(np.float32)[..., None]  # checked before the cast, which would turn 1e300 into inf


_compiled_calls = weakref.WeakKeyDictionary()


def _compiled_call(model):
    """A traced inference call per model: ~1 ms per small batch against tens of ms for model.predict."""
    call = _compiled_calls.get(model)
    if call is None:
        import tensorflow as tf  # the TensorFlow backend's graph compiler

        def infer(inputs):
            return model(inputs, training=False)

        call = tf.function(infer, reduce_retracing=True, autograph=False)  # no Python control flow to convert
        _compiled_calls[model] = call
    return call


def predict_probabilities(model, images, addends):
    """Digit (N, 10) and sum (N, 19) probabilities for validated images and addends."""
    images = as_mnist_batch(images)
    addends = np.atleast_1d(as_class_indices(addends, "addends", NUM_DIGITS))
    if len(addends) == 1 and len(images) > 1:
        addends = np.repeat(addends, len(images))
    if len(addends) != len(images):
        raise ValueError(f"addends ({len(addends)}) and images ({len(images)}) differ in length")
    call = _compiled_call(model)
    digit_parts, sum_parts = [], []
    for start in range(0, len(images), PREDICT_BATCH):
        stop = start + PREDICT_BATCH
        outputs = call({"image": images[start:stop], "addend": encode_addends(addends[start:stop])})
        digit_parts.append(keras.ops.convert_to_numpy(outputs["digit"]))
        sum_parts.append(keras.ops.convert_to_numpy(outputs["sum"]))
    return np.concatenate(digit_parts), np.concatenate(sum_parts)


def predict_digit_and_sum(model, images, addends):
    """Predict the digit in each image and its sum with the addend.

    `images`: one (28, 28) image or a batch of MNIST pixels (0-255, white on
    black; `preprocess_image` turns other images into that); `addends`: one int
    0-9 (used for every image) or one per image. Returns a dict with `digit`
    and `sum` (int arrays) and `digit_probability` (N, 10), `sum_probability` (N, 19).
    """
    digit_probability, sum_probability = predict_probabilities(model, images, addends)
    return {
        "digit": digit_probability.argmax(axis=1),
        "sum": sum_probability.argmax(axis=1),
        "digit_probability": digit_probability,
        "sum_probability": sum_probability,
    }


# --------------------------------------------------------------------------- evaluation


def evaluate_model(model, images, digits, addends):
    """Accuracy, loss, consistency, confusion matrices, reports and errors on a labelled set.

    Returns a dict: `digit_accuracy`, `sum_accuracy`, `digit_loss`, `sum_loss`,
    `consistency` (share of predicted sum == predicted digit + addend),
    `digit_confusion` (10x10), `sum_confusion` (19x19), `digit_report` and
    `sum_report` (scikit-learn classification reports, text), `misclassified`
    (indices where the digit or the sum is wrong) and `predictions`.
    """
    digits = np.atleast_1d(as_class_indices(digits, "digits", NUM_DIGITS))
    addends = np.atleast_1d(as_class_indices(addends, "addends", NUM_DIGITS))
    true_sums = sum_labels(digits, addends)
    predictions = predict_digit_and_sum(model, images, addends)
    if len(predictions["digit"]) != len(digits):
        raise ValueError(f"images ({len(predictions['digit'])}) and digits ({len(digits)}) differ in length")
    digit_hit = predictions["digit"] == digits
    sum_hit = predictions["sum"] == true_sums
    return {
        "digit_accuracy": float(digit_hit.mean()),
        "sum_accuracy": float(sum_hit.mean()),
        "digit_loss": _cross_entropy(predictions["digit_probability"], digits),
        "sum_loss": _cross_entropy(predictions["sum_probability"], true_sums),
        "consistency": float(np.mean(predictions["sum"] == predictions["digit"] + addends)),
        "digit_confusion": confusion_matrix(digits, predictions["digit"], labels=range(NUM_DIGITS)),
        "sum_confusion": confusion_matrix(true_sums, predictions["sum"], labels=range(NUM_SUMS)),
        "digit_report": classification_report(
            digits, predictions["digit"], labels=range(NUM_DIGITS), digits=4, zero_division=0
        ),
        "sum_report": classification_report(
            true_sums, predictions["sum"], labels=range(NUM_SUMS), digits=4, zero_division=0
        ),
        "misclassified": np.flatnonzero(~(digit_hit & sum_hit)),
        "predictions": predictions,
    }


def _cross_entropy(probabilities, labels):
    targets = keras.ops.one_hot(labels, probabilities.shape[1])
    return float(keras.ops.mean(keras.losses.categorical_crossentropy(targets, probabilities)))


def addition_table(model, images, digits, addends=range(NUM_DIGITS)):
    """10x10 table of predicted sums: row = digit, column = addend, for one image of each digit.

    Uses the first image of each digit in `images`.
    """
    digits = np.atleast_1d(as_class_indices(digits, "digits", NUM_DIGITS))
    firsts = [int(np.flatnonzero(digits == d)[0]) for d in range(NUM_DIGITS)]
    addends = list(addends)
    batch = np.repeat(np.asarray(images)[firsts], len(addends), axis=0)
    predicted = predict_digit_and_sum(model, batch, np.tile(addends, NUM_DIGITS))["sum"]
    return predicted.reshape(NUM_DIGITS, len(addends))


# --------------------------------------------------------------------------- outside images

MAX_SIDE = 1024  # larger images are shrunk first: plenty for one digit, and a bounded cost
DIGIT_BOX = 20  # MNIST scaled each digit's longer side to 20 px ...
MNIST_CENTER = (14.0, 14.0)  # ... and put its centre of mass here (measured mean: 13.99, 14.01)
MIN_CONTRAST = 32  # ink must stand this far (of 255) above the paper to count as a digit
STROKE_RATIO = 0.12  # MNIST's median stroke is 0.128 of the digit's size; thinner digits are thickened
JOIN_MARGIN = 0.4  # pieces this near the digit's box (share of its size) join it: a 5's bar, a 4's stem
MIN_PIECE = 0.03  # ... unless smaller than this share of the largest piece (specks)


def preprocess_image(source):
    """Turn an outside image into one MNIST-style (28, 28, 1) float32 image, white digit on black, 0-255.

    `source`: an image file's path, a PIL image or an array (see `read_image`);
    any size, colour or grey, dark ink on light paper or light on dark. The
    background is flattened and made black, the digit is found as the largest
    piece of Otsu-thresholded ink plus the pieces near it (specks are dropped),
    thin strokes are thickened, and, as MNIST did, the digit's longer side is
    scaled to 20 px and its centre of mass put at the centre of the 28x28 frame.
    Raises ValueError when no digit is found or the source is not a usable image.
    """
    found = _find_digit(_ink_map(read_image(source)))
    if found is None:
        raise ValueError(f"no digit found in {_describe(source)}: it is blank, uniform or too faint")
    return _mnist_frame(_thicken(*found))


def read_image(source):
    """An image file, PIL image or array as float32 (H, W, C) pixels 0-255: C is 1 (grey) or 3 (colour).

    Arrays are (H, W) or (H, W, 1|3|4) pixels 0-255 (0-1 floats and 16-bit
    values are rescaled). Transparent images are laid on a backdrop that
    contrasts with their ink; sides over MAX_SIDE pixels are shrunk by averaging.
    """
    if isinstance(source, (str, os.PathLike)):
        pixels = _read_file(os.fspath(source))
    elif isinstance(source, Image.Image):
        pixels = _as_pixels(_pil_array(source), "source")
    else:
        pixels = _as_pixels(source, "source")
    pixels = _flatten_alpha(pixels)
    return _block_mean(pixels, -(-max(pixels.shape[:2]) // MAX_SIDE))  # no side over MAX_SIDE


def otsu_threshold(values, bins=256):
    """Otsu's threshold: the cut through the histogram that maximises the between-class variance."""
    counts, edges = np.histogram(values, bins)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(counts)[:-1]
    above = counts.sum() - below
    mass_below = np.cumsum(counts * centres)[:-1]
    mean_below = mass_below / np.maximum(below, 1)
    mean_above = (mass_below[-1] + counts[-1] * centres[-1] - mass_below) / np.maximum(above, 1)
    return edges[1 + np.argmax(below * above * (mean_below - mean_above) ** 2)]


def _describe(source):
    return f"image file {os.fspath(source)!r}" if isinstance(source, (str, os.PathLike)) else "source"


def _read_file(path):
    if os.path.isdir(path):
        raise ValueError(f"image file {path!r} is a directory, not an image")
    if not os.path.exists(path):
        raise FileNotFoundError(f"image file {path!r} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.draft(None, (MAX_SIDE, MAX_SIDE))  # JPEGs decode at a reduced scale; others ignore it
                array = _pil_array(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(f"image file {path!r} is too large to decode safely: {error}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # what Pillow raises for broken files
        raise ValueError(f"image file {path!r} is not a readable image: {error}") from None
    return _as_pixels(array, f"image file {path!r}")


def _pil_array(image):
    """A PIL image's grey, RGB or RGBA pixels, upright (EXIF orientation), at most MAX_SIDE on a side."""
    image = ImageOps.exif_transpose(image)
    if "transparency" in image.info or image.mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    elif image.mode.startswith("I;16"):
        image = image.convert("I")
    elif image.mode not in ("L", "RGB", "RGBA", "I", "F"):
        image = image.convert("RGB")  # palette, 1-bit, CMYK, YCbCr, ...
    factor = -(-max(image.size) // MAX_SIDE)
    return np.asarray(image.reduce(factor) if factor > 1 else image)  # averaged before any float copy


def _as_pixels(array, name):
    """Validate an image array and return it as float32 (H, W, C) pixels 0-255."""
    try:
        array = np.asarray(array)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{name} is not an image array: {error}") from None
    floats = np.issubdtype(array.dtype, np.floating)
    if array.dtype == bool or not (floats or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must hold pixel values, got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name} must be a (H, W) grey or (H, W, 3|4) colour image, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: shape {array.shape}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite pixels")
    low, high = array.min(), array.max()
    if low < 0 or high > 65535:
        raise ValueError(f"{name} must hold pixels 0-255, got {low:g} to {high:g}")
    if high > 255:  # 16-bit
        array /= 257
    elif floats and high <= 1:  # 0-1 floats
        array *= 255
    return array


def _flatten_alpha(pixels):
    """Lay an (H, W, 4) image on white if its visible ink is dark, else on black."""
    if pixels.shape[2] != 4:
        return pixels
    colour, alpha = pixels[..., :3], pixels[..., 3:] / 255
    visible = alpha.sum()
    dark_ink = visible == 0 or (colour.mean(axis=2, keepdims=True) * alpha).sum() / visible < 128
    return colour * alpha + (255 if dark_ink else 0) * (1 - alpha)


def _block_mean(pixels, factor):
    """Shrink (H, W, C) pixels by averaging factor x factor blocks; the last partial ones are dropped."""
    factor = min(factor, *pixels.shape[:2])
    if factor <= 1:
        return pixels
    height, width = (side // factor for side in pixels.shape[:2])
    blocks = pixels[: height * factor, : width * factor].reshape(height, factor, width, factor, -1)
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def _ink_map(pixels):
    """Ink strength per pixel, about 0 on the paper, whatever the polarity, colour and lighting."""
    height, width = pixels.shape[:2]
    grain = min(height, width) / 400  # blur of about 1.5 px on a phone photo, none on a 28x28 image
    pixels = ndimage.gaussian_filter(pixels, (grain, grain, 0))
    if _dark_ink(pixels.mean(axis=2)):
        pixels = 255 - pixels  # ink is bright from here on
    return (pixels - _paper(pixels)).max(axis=2)  # coloured ink stands out in at least one channel


def _dark_ink(grey):
    """True for dark ink on light paper, False for light ink on dark.

    The ink is the few pixels far from the paper's level (a local median), so the long tail of the
    brightness around that level, its skew, is on the ink's side, whatever the light does to the paper.
    """
    coarse = _block_mean(grey[..., None], max(grey.shape) // 64)[..., 0]
    paper = ndimage.median_filter(coarse, size=max(3, max(coarse.shape) // 2), mode="nearest")
    return np.sum((grey - _stretch(paper, grey.shape)) ** 3) < 0


def _paper(pixels):
    """The paper under bright ink, uneven light and tint included: a grey opening wider than any stroke.

    Strokes are thinner than a quarter of the digit, so of the picture's longer side: the opening's
    window is half that side. It runs on a copy shrunk to about 128 px, which also averages the grain,
    padded with its edge values, so that a brighter border is kept rather than cut off as a ridge.
    """
    height, width = pixels.shape[:2]
    coarse = _block_mean(pixels, max(height, width) // 128)
    window = max(3, max(coarse.shape[:2]) // 2)
    padded = np.pad(coarse, ((window, window), (window, window), (0, 0)), mode="edge")
    paper = ndimage.grey_opening(padded, size=(window, window, 1))[window:-window, window:-window]
    return _stretch(paper, pixels.shape)


def _stretch(image, shape):
    """Resize a smooth map bilinearly to the height and width of `shape`."""
    zoom = (shape[0] / image.shape[0], shape[1] / image.shape[1], 1)[: image.ndim]
    return ndimage.zoom(image, zoom, order=1, mode="nearest")


def _border(image):
    """The outermost pixels of a 2-D image."""
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


def _find_digit(ink):
    """The digit's ink scaled to 0-1 (zero elsewhere) and its thresholded pixels; None if there is none."""
    if ink.max() < MIN_CONTRAST:
        return None
    paper = _border(ink)  # the paper's level and noise, read where the digit rarely is
    median = np.median(paper)
    noise = 1.4826 * np.median(np.abs(paper - median))  # a robust standard deviation
    threshold = max(otsu_threshold(ink), median + 5 * noise)
    mask = ink > threshold
    if not mask.any():
        return None
    mask = _digit_pieces(mask)
    low, high = min(median + 3 * noise, threshold / 2), np.percentile(ink[mask], 90)
    strength = np.clip((ink - low) / (high - low), 0, 1) * ndimage.binary_dilation(mask)  # keep a soft rim
    box = ndimage.find_objects((strength > 0).astype(np.int8))[0]
    return strength[box], mask[box]


def _digit_pieces(mask):
    """The largest connected piece of ink plus the sizeable pieces near it; specks elsewhere are dropped."""
    labels, _ = ndimage.label(ndimage.binary_dilation(mask), structure=np.ones((3, 3)))  # bridge 1-px gaps
    labels[~mask] = 0
    areas = np.bincount(labels.ravel())[1:]
    slices = ndimage.find_objects(labels)
    boxes = np.array([(rows.start, cols.start, rows.stop, cols.stop) for rows, cols in slices])
    sizeable = areas >= MIN_PIECE * areas.max()
    kept = areas == areas.max()
    while True:
        top_left, bottom_right = boxes[kept, :2].min(axis=0), boxes[kept, 2:].max(axis=0)
        margin = JOIN_MARGIN * (bottom_right - top_left).max()
        near = sizeable & np.all(boxes[:, :2] < bottom_right + margin, axis=1)
        near &= np.all(boxes[:, 2:] > top_left - margin, axis=1)
        if not np.any(near & ~kept):
            return np.isin(labels, np.flatnonzero(kept) + 1)
        kept |= near


def _thicken(strength, mask):
    """Paint ink around strokes thinner than MNIST's (STROKE_RATIO of the digit's size)."""
    stroke = 4 * ndimage.distance_transform_edt(mask)[mask].mean() - 2  # width of a band from its mean depth
    reach = (STROKE_RATIO * max(mask.shape) - stroke) / 2
    if reach < 1:
        return strength
    pad = int(np.ceil(reach))
    strength, mask = np.pad(strength, pad), np.pad(mask, pad)
    return np.maximum(strength, ndimage.distance_transform_edt(~mask) <= reach)


def _mnist_frame(digit):
    """Scale the digit's longer side to 20 px and put its centre of mass at (14, 14) of a black 28x28."""
    height, width = digit.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(digit.astype(np.float32)).resize(size, Image.Resampling.LANCZOS))
    small = np.clip(small, 0, 1)
    small = small / small.max()
    rows, cols = ndimage.center_of_mass(small)
    top = int(np.clip(round(MNIST_CENTER[0] - rows), 0, IMAGE_SIZE - size[1]))
    left = int(np.clip(round(MNIST_CENTER[1] - cols), 0, IMAGE_SIZE - size[0]))
    frame = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 1), np.float32)
    frame[top : top + size[1], left : left + size[0], 0] = 255 * small
    return frame
