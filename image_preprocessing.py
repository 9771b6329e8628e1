"""Turn a photo or scan of one handwritten digit into an MNIST-style 28x28 input.

    from image_preprocessing import preprocess_image
    image = preprocess_image("my_digit.jpg")   # (28, 28, 1) float32, white on black, 0-255

MNIST digits are white on black, their longer side scaled to 20 px and their
centre of mass at the centre of a 28x28 frame; `preprocess_image` does the same
to an outside image, whatever its size, colours, polarity and lighting, and
whether the digit sits in a wide margin of paper or fills the picture to its edges.
"""

import contextlib
import math
import os
import threading

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage
from skimage import color, filters, measure, morphology, transform

from data_creation import IMAGE_SIZE, numeric_array

MAX_SIDE = 1024  # larger images are shrunk first: plenty for one digit, and a bounded cost
MAX_JPEG_PIXELS = 250_000_000  # a 200-megapixel phone photo, with room: a JPEG decodes at 1/8 of its size or less
MAX_PIXELS = 100_000_000  # other formats decode whole before they are shrunk
_PILLOW_LIMIT_LOCK = threading.Lock()
DIGIT_BOX = 20  # MNIST scaled each digit's longer side to 20 px ...
MNIST_CENTRE = (14, 14)  # ... and put its centre of mass at the centre of the 28x28 frame
PAPER_TILES = 4  # the paper's level is read in tiles of a quarter of the picture's longer side ...
PAPER_PERCENTILE = 10  # ... as the level below 90% of a tile's pixels: ink rarely covers more of a tile
DARK_FRAME = 0.8  # light ink on dark paper only where this share of the frame is dark: strokes can cover 3/4
MIN_CONTRAST = 32  # the strokes must stand this far (of 255) above the paper to count as a digit
MIN_PIECE = 0.03  # pieces of ink smaller than this share of the largest piece are specks
JOIN_GAP = 0.5  # pieces closer to each other than this share of the largest piece's size form the digit
MNIST_STROKE = 2.25  # px in the 28x28 frame: the median width of MNIST's strokes (train set, at 8x magnification)


def preprocess_image(source):
    """Turn an outside image (a file's path, a PIL image or an array) into one MNIST-style (28, 28, 1)
    float32 image, white digit on black, 0-255.

    The paper is flattened to black, the digit is the largest piece of
    Otsu-thresholded ink plus the pieces near it (specks are dropped), its
    strokes are widened or narrowed to MNIST's width, and the digit is framed
    as MNIST's are. Raises
    ValueError when no digit is found or the source is not a usable image.
    """
    digit = _find_digit(_ink_map(read_image(source)))
    if digit is None:
        where = f"image file {os.fspath(source)!r}" if isinstance(source, (str, os.PathLike)) else "source"
        raise ValueError(f"no digit found in {where}: it is blank, uniform or too faint")
    return _mnist_frame(_mnist_stroke(*digit))


def read_image(source):
    """An image file, PIL image or (H, W) / (H, W, 1|3|4) array as float32 (H, W, C) pixels 0-255, C = 1 or 3.

    0-1 floats and 16-bit values are rescaled, transparent images are laid on a
    backdrop that contrasts with their ink, and sides over MAX_SIDE are shrunk.
    """
    if isinstance(source, (str, os.PathLike)):
        pixels = _read_file(os.fspath(source))
    elif isinstance(source, Image.Image):
        pixels = _as_pixels(_pil_array(source), "source")
    else:
        pixels = _as_pixels(source, "source")
    return _shrink(_flatten_alpha(pixels))


# --------------------------------------------------------------------------- reading


def _read_file(path):
    if os.path.isdir(path):
        raise ValueError(f"image file {path!r} is a directory, not an image")
    if not os.path.exists(path):
        raise FileNotFoundError(f"image file {path!r} does not exist")
    name = os.path.basename(path)
    try:
        with _pillow_size_check_off(), Image.open(path) as image:  # reads the header only
            _check_size(image, name)
            image.draft(None, (MAX_SIDE, MAX_SIDE))  # JPEGs decode at a reduced scale, cheaply; others ignore it
            array = _pil_array(image)
    except (OSError, SyntaxError, EOFError) as error:  # what Pillow raises for a file that is no image, or broken
        raise ValueError(f"{name} is not a readable image: no PNG, JPEG or other image file") from error
    return _as_pixels(array, f"image file {path!r}")


@contextlib.contextmanager
def _pillow_size_check_off():
    """Pillow refuses images over about 179 megapixels at `open`, before their format is known; `_check_size`
    sets the limit instead, by format. (A lock: Pillow's limit is one setting for the whole process.)"""
    with _PILLOW_LIMIT_LOCK:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _check_size(image, name):
    """Refuse, in plain words, an image whose header claims more pixels than a photo of a digit can have."""
    width, height = image.size
    limit = MAX_JPEG_PIXELS if image.format == "JPEG" else MAX_PIXELS
    if width * height > limit:
        raise ValueError(
            f"{name} is too large: {width:,} x {height:,} pixels (at most {limit / 1e6:.0f} megapixels"
            f"{' for a JPEG' if image.format == 'JPEG' else ''})"
        )


def _pil_array(image):
    """A PIL image's grey, RGB or RGBA pixels, upright (EXIF orientation), at most MAX_SIDE on a side."""
    image = ImageOps.exif_transpose(image)
    if "transparency" in image.info or image.mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    elif image.mode.startswith("I;16"):
        image = image.convert("I")
    elif image.mode not in ("L", "RGB", "RGBA", "I", "F"):
        image = image.convert("RGB")  # palette, 1-bit, CMYK, YCbCr, ...
    factor = math.ceil(max(image.size) / MAX_SIDE)
    return np.asarray(image.reduce(factor) if factor > 1 else image)  # averaged before any float copy


def _as_pixels(array, name):
    """Check an image array and return it as float32 (H, W, C) pixels 0-255."""
    array = numeric_array(array, name, "pixel values")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name} must be a (H, W) grey or (H, W, 3|4) colour image, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite pixels")
    low, high = array.min(), array.max()
    if low < 0 or high > 65535:
        raise ValueError(f"{name} must hold pixels 0-255, got {low:g} to {high:g}")
    floats = np.issubdtype(array.dtype, np.floating)
    array = array.astype(np.float32)
    if high > 255:  # 16-bit
        array /= 257
    elif floats and high <= 1:  # 0-1 floats
        array *= 255
    return array


def _flatten_alpha(pixels):
    """Lay an (H, W, 4) image on white if its visible ink is dark, else on black."""
    if pixels.shape[2] != 4:
        return pixels
    alpha = pixels[..., 3]
    dark_ink = alpha.sum() == 0 or np.average(pixels[..., :3].mean(axis=2), weights=alpha) < 128
    backdrop = (1, 1, 1) if dark_ink else (0, 0, 0)
    return (255 * color.rgba2rgb(pixels / 255, background=backdrop)).astype(np.float32)


def _shrink(pixels):
    """Shrink an image with a side over MAX_SIDE by averaging blocks of pixels."""
    factor = math.ceil(max(pixels.shape[:2]) / MAX_SIDE)
    if factor == 1:
        return pixels
    height, width = (side - side % factor for side in pixels.shape[:2])  # whole blocks only
    return transform.downscale_local_mean(pixels[:height, :width], (factor, factor, 1)).astype(np.float32)


# --------------------------------------------------------------------------- finding the digit


def _ink_map(pixels):
    """Ink strength per pixel, about 0 on the paper, whatever the polarity, colour and lighting."""
    blur = min(pixels.shape[:2]) / 400  # evens out a phone photo's grain; none on a 28x28 image
    pixels = filters.gaussian(pixels, blur, channel_axis=-1, preserve_range=True)
    if _dark_ink(pixels.mean(axis=2)):
        pixels = 255 - pixels  # ink is bright from here on
    return (pixels - _paper(pixels)).max(axis=2)  # coloured ink stands out in one channel at least


def _dark_ink(grey):
    """True for dark ink on light paper, False for light on dark, judged on the picture's frame: the paper runs
    along most of it, even when the digit is cropped tight, as strokes touch the frame only at a few places."""
    frame = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return np.mean(frame < filters.threshold_otsu(grey)) < DARK_FRAME


def _paper(pixels):
    """The paper's level under bright ink, uneven light and tint included: a low percentile in tiles,
    interpolated between their centres; a tile that a thick stroke fills takes the level of the tiles around it.
    The tiles hold only the picture's own pixels, so ink along an edge is not taken for paper (as it is by a
    filter that extends the edge outwards)."""
    height, width = pixels.shape[:2]
    counts = [math.ceil(side * PAPER_TILES / max(height, width)) for side in (height, width)]  # tiles along a side
    tile = [math.ceil(side / count) for side, count in zip((height, width), counts, strict=True)]  # even, no sliver
    levels = measure.block_reduce(
        pixels, (*tile, 1), np.nanpercentile, cval=np.nan, func_kwargs={"q": PAPER_PERCENTILE}
    )
    around = ndimage.grey_opening(levels, size=(3, 3, 1))  # the paper's level in the tiles around each tile
    inked = levels - around > (255 - around) / 2  # over halfway to full ink: filled by a stroke (shadows are lighter)
    return transform.resize(np.where(inked, around, levels), pixels.shape, mode="edge")


def _find_digit(ink):
    """The digit's ink scaled to 0-1 (zero elsewhere) and its thresholded pixels; None if there is none."""
    if ink.max() < MIN_CONTRAST:
        return None
    threshold = filters.threshold_otsu(ink)
    digit = _digit_pieces(ink > threshold)
    core = np.median(ink[digit])  # the strokes' own level
    if core < MIN_CONTRAST:
        return None
    paper = np.median(ink)  # the paper covers most of the picture
    grain = 1.4826 * np.median(np.abs(ink - paper))  # the paper's standard deviation, robustly
    low = min(paper + 3 * grain, threshold / 2)  # where a stroke's soft edge fades into the paper
    strength = np.clip((ink - low) / (core - low), 0, 1) * morphology.dilation(digit)
    box = measure.regionprops((strength > 0).astype(np.uint8))[0].slice
    return strength[box], digit[box]


def _digit_pieces(mask):
    """The largest piece of ink and the sizeable pieces near it or near each other; specks are dropped."""
    largest = max(measure.regionprops(measure.label(mask, connectivity=2)), key=lambda piece: piece.area)
    sizeable = morphology.remove_small_objects(mask, max_size=MIN_PIECE * largest.area, connectivity=2)
    top, left, bottom, right = largest.bbox
    reach = JOIN_GAP / 2 * max(bottom - top, right - left)  # two pieces' reaches meet across a smaller gap
    groups = measure.label(ndimage.distance_transform_edt(~sizeable) <= reach)
    return sizeable & (groups == groups[tuple(largest.coords[0])])


def _mnist_stroke(strength, mask):
    """Widen or narrow the strokes to MNIST's (MNIST_STROKE once framed) by a grey dilation or erosion.

    The width is twice the median distance from the skeleton to the paper. Narrowing
    keeps the skeleton, so no part of the digit thinner than the rest is lost.
    """
    skeleton = morphology.skeletonize(mask)
    width = 2 * np.median(ndimage.distance_transform_edt(mask)[skeleton]) - 1  # - 1: measured between pixel centres
    ratio = MNIST_STROKE / DIGIT_BOX
    reach = (ratio * max(mask.shape) - width) / (2 * (1 - ratio))  # the box grows or shrinks with the strokes
    if abs(reach) < 1:
        return strength
    radius = round(abs(reach))
    disk = morphology.disk(radius, decomposition="sequence")
    if reach > 0:
        return morphology.dilation(np.pad(strength, radius), disk)
    return np.maximum(morphology.erosion(strength, disk), strength * skeleton)


def _mnist_frame(digit):
    """Crop the digit to its ink, scale its longer side to 20 px, centre its mass at (14, 14) of a black 28x28."""
    digit = digit[measure.regionprops((digit > 0).astype(np.uint8))[0].slice]
    scale = DIGIT_BOX / max(digit.shape)
    height, width = (max(1, round(side * scale)) for side in digit.shape)
    small = transform.resize(digit, (height, width))
    small /= small.max()
    rows, cols = ndimage.center_of_mass(small)
    top = int(np.clip(round(MNIST_CENTRE[0] - rows), 0, IMAGE_SIZE - height))
    left = int(np.clip(round(MNIST_CENTRE[1] - cols), 0, IMAGE_SIZE - width))
    frame = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 1), np.float32)
    frame[top : top + height, left : left + width, 0] = 255 * small
    return frame
