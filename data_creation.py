"""MNIST data for the two-input / two-output network.

Loading and checking MNIST, one-hot addends, 0-18 sum labels, a stratified
train/validation split, image augmentation and the Keras data set
(`MnistSumDataset`) that feeds the model:

    inputs  {"image": (B, 28, 28, 1) uint8 pixels, "addend": (B, 10) one-hot}
    targets {"digit": (B, 10) one-hot,              "sum": (B, 19) one-hot}
"""

import math
import os
import zipfile

import keras
import numpy as np
from scipy.ndimage import gaussian_filter
from sklearn.model_selection import train_test_split

IMAGE_SIZE = 28
NUM_DIGITS = 10  # digits 0-9, and addends 0-9
NUM_SUMS = 19  # sums 0-18
EVALUATION_BATCH = 512  # images per batch where the network only evaluates or predicts
MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")
REQUIRED_AUGMENTATION = {"max_rotation", "max_shift", "zoom_range"}  # augment_images' keyword arguments
ALL_AUGMENTATION = REQUIRED_AUGMENTATION | {"elastic_pixels"}
ELASTIC_SMOOTHNESS = 4.0  # pixels: the blur (Gaussian sigma) of an elastic warp's random field


# --------------------------------------------------------------------------- loading


def load_mnist(path=None):
    """Return `(x_train, y_train), (x_test, y_test)` as uint8 arrays, checked.

    The source is `path`, else the `MNIST_NPZ` environment variable, else
    Keras' own download (`keras.datasets.mnist.load_data()`).
    """
    path = os.fspath(path) if path else os.environ.get("MNIST_NPZ")
    if path:
        x_train, y_train, x_test, y_test = _read_npz(path)
    else:
        path = "keras.datasets.mnist"
        try:
            (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
        except Exception as error:  # Keras raises a bare Exception for a failed fetch
            raise FileNotFoundError(
                f"MNIST could not be downloaded ({error}); pass the path of an mnist.npz "
                "(train.py --data PATH) or set the MNIST_NPZ environment variable"
            ) from None
    _check_split(x_train, y_train, f"MNIST train split in {path}")
    _check_split(x_test, y_test, f"MNIST test split in {path}")
    return (x_train, y_train), (x_test, y_test)


def _read_npz(path):
    if os.path.isdir(path):
        raise ValueError(f"MNIST file {path!r} is a directory, not an .npz file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"MNIST file {path!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"MNIST file {path!r} is not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as error:
        raise ValueError(f"MNIST file {path!r} is not a readable .npz file: {error}") from None
    missing = [key for key in MNIST_KEYS if key not in arrays]
    if missing:
        raise ValueError(f"MNIST file {path!r} lacks the key(s) {missing}; it has {sorted(arrays)}")
    return tuple(arrays[key] for key in MNIST_KEYS)


def _check_split(images, labels, where):
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{where}: images have shape {images.shape}, expected (N, 28, 28)")
    if images.dtype != np.uint8:
        raise ValueError(f"{where}: images have dtype {images.dtype}, expected uint8")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{where}: labels have shape {labels.shape}, expected ({len(images)},) to match the images")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where}: labels have dtype {labels.dtype}, expected integers")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_DIGITS):
        raise ValueError(f"{where}: labels range {labels.min()}..{labels.max()}, expected 0..9")


# --------------------------------------------------------------------------- checking inputs and labels


def numeric_array(values, name, what):
    """`values` as a NumPy array of integers or floats; a ValueError naming `name` and `what` it must hold."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{name} is not an array of {what}: {error}") from None
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name} must hold {what}, got dtype {array.dtype}")
    return array


def as_class_indices(values, name, num_classes):
    """Check class indices 0..num_classes-1 (a scalar or 1-D; integral floats pass) and return them as int64."""
    if values is None:
        raise ValueError(f"{name} is None; expected integers 0-{num_classes - 1}")
    array = numeric_array(values, name, "integers")
    if array.ndim > 1:
        raise ValueError(f"{name} must be a scalar or 1-D, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if not np.all(array == np.round(array)):
        raise ValueError(f"{name} contains non-integer values such as {array[array != np.round(array)].flat[0]}")
    if array.min() < 0 or array.max() >= num_classes:
        raise ValueError(f"{name} must lie in 0-{num_classes - 1}, got values from {array.min():g} to {array.max():g}")
    return array.astype(np.int64)


def one_per_image(values, name, num_classes, count):
    """Class indices (checked like `as_class_indices`) as a 1-D array, exactly one for each of `count` images."""
    values = np.atleast_1d(as_class_indices(values, name, num_classes))
    if len(values) != count:
        raise ValueError(f"{name}: {len(values)} values for {count} images, expected one per image")
    return values


def as_mnist_batch(images, name="images"):
    """Check MNIST pixels (0-255, white on black) and return float32 (N, 28, 28, 1).

    Accepts one image (28, 28) / (28, 28, 1) or a batch (N, 28, 28) / (N, 28, 28, 1).
    """
    array = numeric_array(images, name, "numbers 0-255")
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


def one_hot(indices, name, num_classes):
    """One-hot encode checked class indices as a float32 (N, num_classes) array."""
    indices = np.atleast_1d(as_class_indices(indices, name, num_classes))
    return np.eye(num_classes, dtype=np.float32)[indices]


def encode_addends(addends):
    """One-hot encode addends 0-9: 7 -> [0,0,0,0,0,0,0,1,0,0], shape (N, 10) float32."""
    return one_hot(addends, "addends", NUM_DIGITS)


def encode_sums(sums):
    """One-hot encode sums 0-18: 13 -> index 13 set, shape (N, 19) float32."""
    return one_hot(sums, "sums", NUM_SUMS)


def decode_one_hot(encoded, name="encoded"):
    """Class indices of a one-hot (or probability) matrix: the arg-max of each row."""
    encoded = np.asarray(encoded)
    if encoded.ndim != 2 or encoded.shape[1] == 0 or encoded.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, classes) matrix, got shape {encoded.shape}")
    return np.argmax(encoded, axis=1)


def sum_labels(digits, addends):
    """The 0-18 sum label of each (digit, addend) pair."""
    digits = np.atleast_1d(as_class_indices(digits, "digits", NUM_DIGITS))
    return digits + one_per_image(addends, "addends", NUM_DIGITS, len(digits))


def draw_addends(count, rng):
    """`count` random addends 0-9 from a NumPy Generator."""
    return rng.integers(0, NUM_DIGITS, size=count)


def check_allowed_pairs(allowed_pairs):
    """Check a (10 digits, 10 addends) table of booleans, True where a (digit, addend) pair may be drawn,
    and return it as a NumPy array; every digit needs at least one addend."""
    table = np.asarray(allowed_pairs)
    if table.shape != (NUM_DIGITS, NUM_DIGITS) or table.dtype != bool:
        raise ValueError(f"allowed_pairs must be a (10, 10) boolean table, got {table.dtype} {table.shape}")
    lonely = np.flatnonzero(~table.any(axis=1))
    if len(lonely):
        raise ValueError(f"allowed_pairs allows no addend for digit(s) {lonely.tolist()}")
    return table


def draw_allowed_addends(digits, rng, allowed_pairs):
    """One random addend per digit, drawn evenly among the addends that `allowed_pairs` allows for it."""
    table = check_allowed_pairs(allowed_pairs)
    digits = np.atleast_1d(as_class_indices(digits, "digits", NUM_DIGITS))
    allowed_first = np.argsort(~table, axis=1, kind="stable")  # per digit: its allowed addends, in order, first
    picks = (rng.random(len(digits)) * table.sum(axis=1)[digits]).astype(np.int64)
    return allowed_first[digits, picks]


def evaluation_addends(count, seed, split, digits=None, allowed_pairs=None):
    """The fixed addends of a run's "validation" or "test" images, so that train.py, bench.py and the
    notebook score the same (image, addend) pairs. Given `allowed_pairs`, the images' `digits` get
    addends drawn among the allowed pairs only."""
    offsets = {"validation": 1, "test": 2}
    if split not in offsets:
        raise ValueError(f"split must be 'validation' or 'test', got {split!r}")
    rng = np.random.default_rng(seed + offsets[split])
    if allowed_pairs is None:
        return draw_addends(count, rng)
    if digits is None or len(digits) != count:
        raise ValueError(f"allowed_pairs needs the digits of the {count} images")
    return draw_allowed_addends(digits, rng, allowed_pairs)


def train_validation_split(images, digits, validation_size, seed):
    """A seeded split that holds out `validation_size` images and keeps the class balance in both parts."""
    x_train, x_val, y_train, y_val = train_test_split(
        images, digits, test_size=validation_size, stratify=digits, random_state=seed
    )
    return (x_train, y_train), (x_val, y_val)


# --------------------------------------------------------------------------- augmentation


def augment_images(images, rng, max_rotation, max_shift, zoom_range, elastic_pixels=0.0):
    """Rotate (degrees), shift (pixels) and zoom each of a batch of (B, 28, 28) uint8 images at random.

    One affine transform per image, bilinear, with a black border; never a flip
    (a flipped 2 or 5 is not the same digit). With `elastic_pixels` > 0, every
    pixel is also moved by a smooth random field (Simard et al., 2003): noise
    blurred over ELASTIC_SMOOTHNESS pixels, scaled so that a pixel moves
    `elastic_pixels` along each axis (root mean square), like a hand that wobbles.
    """
    count, height, width = images.shape
    angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation, count))
    scale = rng.uniform(1 - zoom_range, 1 + zoom_range, count)
    shift = rng.uniform(-max_shift, max_shift, (count, 2))
    # Inverse map: for every output pixel, where to read in the source image.
    cos = (np.cos(angle) / scale).astype(np.float32)[:, None, None]
    sin = (np.sin(angle) / scale).astype(np.float32)[:, None, None]
    center_r, center_c = (height - 1) / 2, (width - 1) / 2
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    out_r = rows - center_r - shift[:, 0, None, None].astype(np.float32)
    out_c = cols - center_c - shift[:, 1, None, None].astype(np.float32)
    src_r = cos * out_r - sin * out_c + center_r
    src_c = sin * out_r + cos * out_c + center_c
    if elastic_pixels > 0:
        field = gaussian_filter(rng.standard_normal((2, count, height, width)), ELASTIC_SMOOTHNESS, axes=(2, 3))
        field *= elastic_pixels / np.sqrt(np.mean(field**2, axis=(0, 2, 3), keepdims=True))
        src_r, src_c = src_r + field[0].astype(np.float32), src_c + field[1].astype(np.float32)
    # Bilinear reads at (src_r, src_c), in coordinates of the images padded with a black border.
    padded = np.pad(images.astype(np.float32), ((0, 0), (1, 1), (1, 1))).ravel()
    src_r, src_c = np.clip(src_r + 1, 0, height), np.clip(src_c + 1, 0, width)
    r0, c0 = np.floor(src_r), np.floor(src_c)
    wr, wc = src_r - r0, src_c - c0
    stride = width + 2
    top_left = (np.arange(count, dtype=np.int32)[:, None, None] * (height + 2) + r0.astype(np.int32)) * stride
    top_left += c0.astype(np.int32)
    top = padded[top_left] * (1 - wc) + padded[top_left + 1] * wc
    bottom = padded[top_left + stride] * (1 - wc) + padded[top_left + stride + 1] * wc
    return np.rint(top * (1 - wr) + bottom * wr).astype(np.uint8)


# --------------------------------------------------------------------------- the Keras data set


class MnistSumDataset(keras.utils.PyDataset):
    """Batches of ({"image", "addend"}, {"digit", "sum"}) for `model.fit` and `evaluate`.

    An evaluation set is given its `addends`, one per image, and keeps them and
    the image order. A training set (`addends=None`) reshuffles the images and
    re-draws their addends every epoch, from `seed` and the epoch number, so the
    network meets new (image, addend) pairs each epoch and a run is reproducible.
    Given `augmentation` (`augment_images`' keyword arguments), it also warps the
    images of the first `augment_epochs` epochs (None: of all of them). Given
    `allowed_pairs` (see `check_allowed_pairs`), a training set draws only those
    (digit, addend) pairs: the others are withheld, to ask whether the network adds.
    """

    def __init__(
        self,
        images,
        digits,
        batch_size,
        addends=None,
        seed=0,
        augmentation=None,
        augment_epochs=None,
        allowed_pairs=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        images = np.asarray(images)
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, 28, 28), got {images.dtype} {images.shape}")
        if len(images) == 0:
            raise ValueError("images is empty")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if augment_epochs is not None and (not isinstance(augment_epochs, int) or augment_epochs < 0):
            raise ValueError(f"augment_epochs must be None or an integer >= 0, got {augment_epochs!r}")
        if augmentation is not None and not REQUIRED_AUGMENTATION <= set(augmentation) <= ALL_AUGMENTATION:
            needs = f"{sorted(REQUIRED_AUGMENTATION)}, and may have elastic_pixels"
            raise ValueError(f"augmentation needs {needs}, got {sorted(augmentation)}")
        self.images, self.batch_size, self.seed = images, batch_size, seed
        self.digits = one_per_image(digits, "digits", NUM_DIGITS, len(self.images))
        self.training = addends is None
        if not self.training:
            self.addends = one_per_image(addends, "addends", NUM_DIGITS, len(self.images))
            self.order = np.arange(len(images))
        self.augmentation = augmentation if self.training else None
        self.augment_epochs = augment_epochs
        self.allowed_pairs = None if allowed_pairs is None else check_allowed_pairs(allowed_pairs)
        self.set_epoch(0)

    @property
    def augmenting(self):
        """Whether the batches of the current epoch are augmented."""
        return self.augmentation is not None and (self.augment_epochs is None or self.epoch < self.augment_epochs)

    def __len__(self):
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        images = self.images[rows]
        if self.augmenting:
            images = augment_images(images, np.random.default_rng([self.seed, self.epoch, index]), **self.augmentation)
        digits, addends = self.digits[rows], self.addends[rows]
        inputs = {"image": images[..., None].astype(np.float32), "addend": encode_addends(addends)}
        targets = {"digit": one_hot(digits, "digits", NUM_DIGITS), "sum": encode_sums(digits + addends)}
        return inputs, targets

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)

    def set_epoch(self, epoch):
        """Arrange the order and addends of a training set's `epoch` (also where a resumed run starts)."""
        self.epoch = epoch
        if self.training:
            rng = np.random.default_rng([self.seed, epoch])
            self.order = rng.permutation(len(self.images))
            if self.allowed_pairs is None:
                self.addends = draw_addends(len(self.images), rng)
            else:
                self.addends = draw_allowed_addends(self.digits, rng, self.allowed_pairs)
