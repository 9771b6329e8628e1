"""Property-based fuzzing: any input gives a valid result or a ValueError, never anything else."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from data_creation import as_mnist_batch, decode_one_hot, encode_addends, encode_sums, sum_labels
from image_preprocessing import preprocess_image

DTYPES = st.sampled_from(["uint8", "int16", "int64", "float32", "float64", "bool", "object", "complex64"])
SCALARS = st.one_of(
    st.integers(-50, 50),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.none(),
    st.booleans(),
)
ARRAYS = DTYPES.flatmap(
    lambda dtype: hnp.arrays(
        dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6), elements=_elements(dtype)
    )
)


def _elements(dtype):
    """Mixed Python objects for object arrays; hypothesis' full range (NaN, inf, extremes) otherwise."""
    return st.one_of(st.integers(0, 9), st.none(), st.text(max_size=1)) if dtype == "object" else None


def _valid_one_hot(encoded, classes):
    assert encoded.dtype == np.float32 and encoded.ndim == 2 and encoded.shape[1] == classes
    assert np.all(encoded.sum(axis=1) == 1) and set(np.unique(encoded)) <= {0.0, 1.0}


@settings(max_examples=300, deadline=None)
@given(st.one_of(SCALARS, ARRAYS, st.lists(SCALARS, max_size=4)))
def test_encoders_return_one_hot_or_raise_value_error(values):
    for encode, classes in ((encode_addends, 10), (encode_sums, 19)):
        try:
            encoded = encode(values)
        except ValueError:
            continue
        _valid_one_hot(encoded, classes)
        assert decode_one_hot(encoded).tolist() == np.atleast_1d(np.asarray(values)).astype(int).tolist()


@settings(max_examples=200, deadline=None)
@given(st.one_of(SCALARS, ARRAYS), st.one_of(SCALARS, ARRAYS))
def test_sum_labels_return_0_to_18_or_raise_value_error(digits, addends):
    try:
        sums = sum_labels(digits, addends)
    except ValueError:
        return
    assert sums.min() >= 0 and sums.max() <= 18


IMAGE_SHAPES = st.sampled_from([(28, 28), (28, 28, 1), (2, 28, 28), (1, 28, 28, 1), (0, 28, 28), (28, 27), (3,), ()])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    DTYPES.flatmap(
        lambda dtype: IMAGE_SHAPES.flatmap(lambda shape: hnp.arrays(dtype, shape, elements=_elements(dtype)))
    )
)
def test_image_batches_are_valid_or_raise_value_error(images):
    try:
        batch = as_mnist_batch(images)
    except ValueError:
        return
    assert batch.dtype == np.float32 and batch.shape[1:] == (28, 28, 1) and len(batch) >= 1
    assert batch.min() >= 0 and batch.max() <= 255


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    DTYPES.flatmap(
        lambda dtype: hnp.arrays(
            dtype, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40), elements=_elements(dtype)
        )
    )
)
def test_preprocess_image_is_mnist_shaped_or_raises_value_error(source):
    try:
        image = preprocess_image(source)
    except ValueError:
        return
    assert image.shape == (28, 28, 1) and image.dtype == np.float32
    assert image.min() >= 0 and image.max() <= 255 and image.max() > 0
