"""Turn a photo or scan of one handwritten digit into an MNIST-style 28x28 input.

    from image_preprocessing import preprocess_image
    image = preprocess_image("my_digit.jpg")   # (28, 28, 1) float32, white on black, 0-255

MNIST digits are white on black, their longer side scaled to 20 px and their
centre of mass at the centre of a 28x28 frame; `preprocess_image` does the same
to an outside image, whatever its size, colours, polarity and lighting.
"""

import os
import warnings

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

from data_creation import IMAGE_SIZE

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
