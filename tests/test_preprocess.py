"""preprocess_image: outside images (files, PIL images, arrays) into MNIST-style 28x28 inputs."""

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from evaluate_func import predict_digit_and_sum
from image_preprocessing import preprocess_image


def draw_seven(size=(160, 200), box=(40, 40, 120, 160), width=10, ink=30, paper=235):
    """A pen '7' (a bar and a diagonal) filling `box` on a grey uint8 picture of `size` (width, height)."""
    image = Image.new("L", size, paper)
    left, top, right, bottom = box
    stroke = [(left, top), (right, top), (left + (right - left) // 3, bottom)]
    ImageDraw.Draw(image).line(stroke, fill=ink, width=width, joint="curve")
    return np.asarray(image)


def correlation(a, b):
    return np.corrcoef(np.ravel(a), np.ravel(b))[0, 1]


def similarity(a, b):
    """Correlation of slightly blurred 28x28 images: forgives the 1-pixel shifts of a different drawing."""
    return correlation(ndimage.gaussian_filter(a[..., 0], 1), ndimage.gaussian_filter(b[..., 0], 1))


def ink_box(image, level=0):
    """(height, width) of the box around the pixels above `level`."""
    inked = image[..., 0] > level
    rows, cols = np.flatnonzero(inked.any(axis=1)), np.flatnonzero(inked.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def centre_of_mass(image):
    grid = np.arange(28)
    total = image.sum()
    return (image[..., 0].sum(axis=1) @ grid) / total, (image[..., 0].sum(axis=0) @ grid) / total


@pytest.fixture(scope="module")
def seven():
    return preprocess_image(draw_seven())


# --------------------------------------------------------------------------- the MNIST convention


def test_output_is_one_mnist_image(seven):
    assert seven.shape == (28, 28, 1) and seven.dtype == np.float32
    assert seven.min() == 0 and seven.max() == pytest.approx(255)


def test_dark_on_light_and_light_on_dark_agree(seven):
    np.testing.assert_allclose(preprocess_image(255 - draw_seven()), seven, atol=1)


@pytest.mark.parametrize("box", [(10, 10, 60, 90), (90, 100, 150, 190), (30, 20, 140, 60)])
def test_centre_of_mass_is_centred(box):
    rows, cols = centre_of_mass(preprocess_image(draw_seven(box=box)))
    assert abs(rows - 14) <= 1.5 and abs(cols - 14) <= 1.5


def test_longest_side_is_20_pixels(seven):
    assert max(ink_box(seven)) in (19, 20, 21)


def test_real_mnist_images_pass_through_nearly_unchanged(mnist):
    (_, _), (x_test, _) = mnist
    originals = x_test[:100]
    processed = np.stack([preprocess_image(image)[..., 0] for image in originals])
    correlations = np.array([correlation(a, b) for a, b in zip(originals, processed, strict=True)])
    assert np.median(correlations) > 0.99
    assert np.mean(correlations > 0.8) >= 0.95
    assert np.abs(processed - originals).mean() < 5


def test_the_result_feeds_the_network(untrained_model, seven):
    predicted = predict_digit_and_sum(untrained_model, seven, 3)
    assert predicted["digit"].shape == (1,) and predicted["sum_probability"].shape == (1, 19)


# --------------------------------------------------------------------------- photos


def test_specks_far_from_the_digit_are_ignored():
    clean = draw_seven(size=(300, 300), box=(100, 80, 180, 200))
    specked = clean.copy()
    for row, col in [(10, 10), (20, 280), (280, 15), (270, 270), (150, 20)]:
        specked[row : row + 4, col : col + 4] = 20
    np.testing.assert_allclose(preprocess_image(specked), preprocess_image(clean), atol=1)


def test_a_detached_stroke_stays_with_the_digit():
    image = Image.new("L", (200, 220), 240)
    draw = ImageDraw.Draw(image)
    draw.line([(60, 20), (40, 120), (150, 120)], fill=20, width=10)  # a 4 drawn in two strokes,
    draw.line([(125, 40), (125, 200)], fill=20, width=10)  # the stem apart from the rest
    height, width = ink_box(preprocess_image(np.asarray(image)), level=64)
    assert height >= 19 and width >= 12


def test_uneven_light_is_flattened(seven):
    light = np.linspace(1.0, 0.45, 160)[None, :] * np.linspace(1.0, 0.8, 200)[:, None]
    assert correlation(preprocess_image(draw_seven() * light), seven) > 0.95


def test_coloured_ink_on_tinted_paper(seven):
    ink = (235.0 - draw_seven()) / (235 - 30)  # 1 on the strokes, 0 on the paper
    paper, blue = np.array([240, 228, 196]), np.array([40, 60, 170])
    picture = paper * (1 - ink[..., None]) + blue * ink[..., None]
    assert correlation(preprocess_image(picture.astype(np.uint8)), seven) > 0.95


def test_a_small_digit_in_a_large_frame(seven):
    result = preprocess_image(draw_seven(size=(1200, 900), box=(700, 300, 740, 360), width=4))
    assert max(ink_box(result)) in (19, 20, 21)
    assert similarity(result, seven) > 0.85


def test_thin_strokes_are_thickened(seven):
    thin = preprocess_image(draw_seven(size=(400, 500), box=(60, 60, 300, 420), width=2))
    thick_pixels = (seven > 127).sum()
    assert (thin > 127).sum() >= 0.6 * thick_pixels


# --------------------------------------------------------------------------- sources


def test_files_pil_images_and_arrays_agree(tmp_path, seven):
    path = tmp_path / "seven.png"
    Image.fromarray(draw_seven()).save(path)
    np.testing.assert_array_equal(preprocess_image(path), seven)
    np.testing.assert_array_equal(preprocess_image(str(path)), seven)
    np.testing.assert_array_equal(preprocess_image(Image.open(path)), seven)
    np.testing.assert_allclose(preprocess_image(draw_seven() / 255.0), seven, atol=1)  # 0-1 floats


def test_a_phone_photo_is_turned_upright_and_16_bit_is_read(tmp_path, seven):
    sideways, deep = tmp_path / "sideways.png", tmp_path / "deep.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: the camera was turned; viewers rotate the picture 90 degrees clockwise
    Image.fromarray(np.rot90(draw_seven())).save(sideways, exif=exif)
    Image.fromarray(draw_seven().astype(np.uint16) * 257).save(deep)  # 16-bit grey
    np.testing.assert_array_equal(preprocess_image(sideways), seven)
    np.testing.assert_allclose(preprocess_image(deep), seven, atol=1)


def test_ink_on_a_transparent_sheet(tmp_path, seven):
    alpha = 255 - draw_seven()
    path = tmp_path / "seven.png"
    Image.fromarray(np.dstack([np.zeros((200, 160, 3), np.uint8), alpha])).save(path)  # black ink
    assert correlation(preprocess_image(path), seven) > 0.95


@pytest.mark.parametrize(
    "picture",
    [np.full((50, 40), 200, np.uint8), np.zeros((28, 28)), np.full((30, 30, 3), (10, 200, 30), np.uint8)],
    ids=["grey", "black", "green"],
)
def test_a_uniform_image_has_no_digit(picture):
    with pytest.raises(ValueError, match="no digit found"):
        preprocess_image(picture)


def test_a_blank_file_has_no_digit(tmp_path):
    path = tmp_path / "blank.jpg"
    Image.new("RGB", (300, 200), (250, 250, 245)).save(path)
    with pytest.raises(ValueError, match=r"no digit found in image file .*blank\.jpg"):
        preprocess_image(path)


def test_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        preprocess_image(tmp_path / "nowhere.png")


def test_a_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        preprocess_image(tmp_path)


def test_a_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.png.*not a readable image"):
        preprocess_image(path)


def test_a_truncated_png(tmp_path):
    whole, cut = tmp_path / "whole.png", tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 120), np.uint8)).save(whole)
    cut.write_bytes(whole.read_bytes()[:3000])
    with pytest.raises(ValueError, match=r"cut\.png.*not a readable image"):
        preprocess_image(cut)


def test_a_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.fromarray(draw_seven()).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 160x200 is over it, as a bomb is over 89 M
    with pytest.raises(ValueError, match=r"huge\.png.*too large"):
        preprocess_image(path)


@pytest.mark.parametrize(
    "array",
    [
        np.ones((28, 28), bool),
        np.array([[None, 1], [2, 3]], object),
        np.full((28, 28), np.nan),
        np.full((28, 28), np.inf),
        np.zeros((0, 28)),
        np.zeros(28),
        np.zeros((2, 28, 28, 1)),
        np.zeros((28, 28, 2)),
        np.full((28, 28), -1.0),
        b"not an array",
    ],
    ids=["bool", "object", "nan", "inf", "empty", "1-D", "4-D", "2-channel", "negative", "bytes"],
)
def test_bad_arrays_are_refused(array):
    with pytest.raises(ValueError, match="source"):
        preprocess_image(array)
