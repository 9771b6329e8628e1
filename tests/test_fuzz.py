"""Property-based tests: valid inputs give the exact answer; each kind of bad input a ValueError that names
the argument and the problem; and whatever comes in, no other exception ever comes out.

Each strategy below draws one kind of input together with its known answer (or the phrase its error
must contain), so a function that always raised, or one that took nonsense for a valid input, fails.
"""

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage

from data_creation import as_mnist_batch, decode_one_hot, encode_addends, encode_sums, sum_labels
from image_preprocessing import preprocess_image

ENCODERS = [(encode_addends, "addends", 10), (encode_sums, "sums", 19)]
INTEGER_DTYPES = ["uint8", "int16", "int64"]
NUMBER_DTYPES = INTEGER_DTYPES + ["float32", "float64"]
NOT_NUMBER_DTYPES = ["bool", "complex64", "object", "str"]
ANY_DTYPE = st.sampled_from(NUMBER_DTYPES + NOT_NUMBER_DTYPES)
SCALARS = st.one_of(st.integers(-50, 50), st.floats(), st.text(max_size=3), st.none(), st.booleans())
SMALL_SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)


def any_array(shapes=SMALL_SHAPES):
    """Arrays of every dtype, with the values Hypothesis likes to try (NaN, inf, extremes, None, text)."""
    return ANY_DTYPE.flatmap(lambda dtype: shapes.flatmap(lambda shape: array_of(dtype, shape)))


def array_of(dtype, shape):
    """Arrays of one dtype and shape; object arrays mix numbers, None and text."""
    if dtype == "object":
        return hnp.arrays(dtype, shape, elements=st.one_of(st.integers(0, 9), st.none(), st.text(max_size=1)))
    if dtype == "str":
        return hnp.arrays("U1", shape)
    return hnp.arrays(dtype, shape)


# --------------------------------------------------------------------------- class indices


def class_indices(classes):
    """Valid indices 0..classes-1 in the forms callers pass (an int, a list, an integer or integral float
    array), each with the list of indices it stands for."""
    values = st.lists(st.integers(0, classes - 1), min_size=1, max_size=8)
    return st.one_of(
        st.integers(0, classes - 1).map(lambda value: (value, [value])),
        values.map(lambda values: (values, values)),
        st.tuples(values, st.sampled_from(NUMBER_DTYPES)).map(lambda pair: (np.array(pair[0], pair[1]), pair[0])),
    )


def with_one_bad(values, bad):
    """A list of valid indices with one bad value put among them."""
    return st.tuples(st.lists(values, max_size=4), bad, st.integers(0, 4)).map(
        lambda drawn: drawn[0][: drawn[2]] + [drawn[1]] + drawn[0][drawn[2] :]
    )


def bad_class_indices(classes):
    """Inputs that are not indices 0..classes-1, each with the phrase its error must contain."""
    valid = st.integers(0, classes - 1)
    out_of_range = st.one_of(st.integers(-(2**62), -1), st.integers(classes, 2**62))
    fraction = st.floats(-1e6, 1e6).filter(lambda value: not value.is_integer())
    return st.one_of(
        with_one_bad(valid, out_of_range).map(lambda values: (values, f"must lie in 0-{classes - 1}")),
        with_one_bad(valid, fraction).map(lambda values: (values, "non-integer")),
        with_one_bad(valid, st.sampled_from([np.nan, np.inf, -np.inf])).map(lambda values: (values, "NaN or infinite")),
        hnp.arrays("int64", hnp.array_shapes(min_dims=2, max_dims=3), elements=valid).map(lambda a: (a, "1-D")),
        st.sampled_from([[], (), np.array([], np.int64)]).map(lambda empty: (empty, "is empty")),
        st.none().map(lambda none: (none, "is None")),
        st.one_of(
            st.text(min_size=1, max_size=3),
            st.booleans(),
            st.lists(st.booleans(), min_size=1, max_size=4),
            with_one_bad(valid, st.one_of(st.none(), st.text(max_size=2), st.complex_numbers(min_magnitude=1))),
        ).map(lambda values: (values, "must hold integers")),
    )


@pytest.mark.parametrize("encode, name, classes", ENCODERS)
@given(data=st.data())
def test_valid_indices_are_one_hot_encoded(encode, name, classes, data):
    values, indices = data.draw(class_indices(classes))
    encoded = encode(values)
    assert encoded.dtype == np.float32
    np.testing.assert_array_equal(encoded, np.eye(classes)[indices])
    assert decode_one_hot(encoded).tolist() == indices


@pytest.mark.parametrize("encode, name, classes", ENCODERS)
@given(data=st.data())
def test_bad_indices_are_refused_with_the_reason(encode, name, classes, data):
    values, reason = data.draw(bad_class_indices(classes))
    with pytest.raises(ValueError, match=re.escape(reason)) as raised:
        encode(values)
    assert str(raised.value).startswith(name)


@settings(max_examples=300)
@given(st.one_of(SCALARS, any_array(), st.lists(SCALARS, max_size=4)))
def test_any_input_is_encoded_exactly_or_refused_by_name(values):
    """Whatever comes in: the exact one-hot rows, or a ValueError naming the argument; never another error."""
    for encode, name, classes in ENCODERS:
        try:
            encoded = encode(values)
        except ValueError as error:
            assert str(error).startswith(name)
            continue
        np.testing.assert_array_equal(encoded, np.eye(classes)[np.atleast_1d(values).astype(int)])


@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), min_size=1, max_size=8))
def test_sum_labels_add_each_pair(pairs):
    digits, addends = zip(*pairs, strict=True)
    assert sum_labels(np.array(digits), list(addends)).tolist() == [digit + addend for digit, addend in pairs]


@given(class_indices(10), bad_class_indices(10))
def test_sum_labels_name_the_bad_argument(valid, bad):
    (good, _), (bad, reason) = valid, bad
    for digits, addends, name in ((bad, good, "digits"), (good, bad, "addends")):
        with pytest.raises(ValueError, match=re.escape(reason)) as raised:
            sum_labels(digits, addends)
        assert str(raised.value).startswith(name)


@given(st.lists(st.integers(0, 9), min_size=1, max_size=5), st.lists(st.integers(0, 9), min_size=1, max_size=5))
def test_sum_labels_refuse_pairs_of_different_lengths(digits, addends):
    if len(digits) == len(addends):
        addends = addends + [0]
    with pytest.raises(ValueError, match=f"addends: {len(addends)} values for {len(digits)} images"):
        sum_labels(digits, addends)


# --------------------------------------------------------------------------- images

BATCH_SHAPES = st.sampled_from([(28, 28), (28, 28, 1), (1, 28, 28), (3, 28, 28), (2, 28, 28, 1)])
WRONG_SHAPES = st.sampled_from([(), (3,), (28,), (28, 27), (27, 28, 1), (28, 28, 3), (2, 28, 28, 2), (1, 1, 28, 28)])


def pixels(dtype, shape):
    values = st.integers(0, 255) if dtype in INTEGER_DTYPES else st.floats(0, 255, width=int(dtype[-2:]))
    return hnp.arrays(dtype, shape, elements=values)


def mnist_pixels(shapes=BATCH_SHAPES):
    """Pixel arrays 0-255 of any number dtype in `shapes`."""
    return st.tuples(st.sampled_from(NUMBER_DTYPES), shapes).flatmap(lambda drawn: pixels(*drawn))


def with_one_pixel(values, dtype="float64"):
    """A valid image with one pixel, somewhere, replaced by a value from `values`."""
    image = pixels(dtype, (28, 28))
    return st.tuples(image, st.integers(0, 27), st.integers(0, 27), values).map(_set_pixel)


def _set_pixel(drawn):
    image, row, col, value = drawn
    image[row, col] = value
    return image


BAD_IMAGES = st.one_of(
    mnist_pixels(WRONG_SHAPES).map(lambda images: (images, "must have shape")),
    st.sampled_from([(0, 28, 28), (0, 28, 28, 1)]).map(lambda shape: (np.zeros(shape), "empty batch")),
    with_one_pixel(st.sampled_from([np.nan, np.inf, -np.inf])).map(lambda images: (images, "NaN or infinite")),
    with_one_pixel(
        st.one_of(st.floats(max_value=-1e-3, allow_infinity=False), st.floats(min_value=255.001, allow_infinity=False))
    ).map(lambda images: (images, "pixels 0-255")),
    with_one_pixel(st.integers(-1000, -1), "int16").map(lambda images: (images, "pixels 0-255")),
    st.tuples(st.sampled_from(NOT_NUMBER_DTYPES), BATCH_SHAPES).map(
        lambda drawn: (np.zeros(drawn[1], drawn[0]), "must hold numbers 0-255, got dtype")
    ),
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(mnist_pixels())
def test_mnist_pixels_become_a_float_batch_of_the_same_values(images):
    batch = as_mnist_batch(images)
    assert batch.dtype == np.float32
    np.testing.assert_array_equal(batch, np.asarray(images, np.float32).reshape(-1, 28, 28, 1))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(BAD_IMAGES)
def test_bad_images_are_refused_with_the_reason(bad):
    images, reason = bad
    with pytest.raises(ValueError, match=re.escape(reason)) as raised:
        as_mnist_batch(images, name="pictures")
    assert str(raised.value).startswith("pictures")


IMAGE_SHAPES = st.sampled_from([(28, 28), (28, 28, 1), (2, 28, 28), (1, 28, 28, 1), (0, 28, 28), (28, 27), (3,), ()])


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(any_array(IMAGE_SHAPES))
def test_any_array_is_taken_as_it_is_or_refused_by_name(images):
    """Whatever comes in: the same pixels as a float batch, or a ValueError naming the argument."""
    try:
        batch = as_mnist_batch(images)
    except ValueError as error:
        assert str(error).startswith("images")
        return
    np.testing.assert_array_equal(batch, np.asarray(images, np.float32).reshape(-1, 28, 28, 1))


# --------------------------------------------------------------------------- outside images


@st.composite
def pages_with_a_block(draw):
    """A sheet of paper (any size, dark ink on light paper or light on dark) with one solid block of ink
    away from its edges; the block is no thinner than a third of its length, so it needs no thickening."""
    height, width = draw(st.integers(40, 160)), draw(st.integers(40, 160))
    long_side = draw(st.integers(8, min(height, width) // 3))
    short_side = draw(st.integers(-(-long_side // 3), long_side))
    block_height, block_width = draw(st.permutations([long_side, short_side]))
    top = draw(st.integers(4, height - block_height - 4))
    left = draw(st.integers(4, width - block_width - 4))
    paper, ink = draw(st.sampled_from([(235, 20), (20, 235)]))
    page = np.full((height, width), paper, np.uint8)
    page[top : top + block_height, left : left + block_width] = ink
    return page


@settings(max_examples=60, deadline=None)
@given(pages_with_a_block())
def test_a_block_on_any_page_becomes_a_centred_20_pixel_mnist_digit(page):
    image = preprocess_image(page)[..., 0]
    rows, cols = np.nonzero(image)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 == pytest.approx(20, abs=1)  # MNIST's 20-pixel box
    np.testing.assert_allclose(ndimage.center_of_mass(image), (14, 14), atol=1)
    assert image[0].max() == image[-1].max() == image[:, 0].max() == image[:, -1].max() == 0  # black around


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_array(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40)))
def test_any_array_becomes_an_mnist_image_or_is_refused_with_a_reason(source):
    try:
        image = preprocess_image(source)
    except ValueError as error:
        assert str(error).startswith(("source", "no digit found in source"))
        return
    assert image.shape == (28, 28, 1) and image.dtype == np.float32
    assert image.min() >= 0 and image.max() == 255  # the digit's brightest ink is scaled to full white
