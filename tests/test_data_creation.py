"""Encoders, MNIST loading, the split, augmentation and the Keras data set."""

import re

import keras
import numpy as np
import pytest

from data_creation import (
    MnistSumDataset,
    augment_images,
    decode_one_hot,
    encode_addends,
    encode_sums,
    evaluation_addends,
    load_mnist,
    sum_labels,
    train_validation_split,
)
from train import AUGMENTATION

# --------------------------------------------------------------------------- encoders


def test_addend_seven_is_0000000100():
    assert "".join(str(int(v)) for v in encode_addends(7)[0]) == "0000000100"


def test_sum_thirteen_sets_index_thirteen():
    encoded = encode_sums([13])
    assert encoded.shape == (1, 19) and encoded.dtype == np.float32
    assert np.flatnonzero(encoded[0]).tolist() == [13]


def test_all_hundred_pairs_round_trip():
    digits, addends = np.divmod(np.arange(100), 10)
    sums = sum_labels(digits, addends)
    assert sums.tolist() == [d + a for d, a in zip(digits, addends, strict=True)]
    assert set(sums.tolist()) == set(range(19))
    assert decode_one_hot(encode_addends(addends)).tolist() == addends.tolist()
    assert decode_one_hot(encode_sums(sums)).tolist() == sums.tolist()
    assert encode_addends(addends).sum(axis=1).tolist() == [1.0] * 100


@pytest.mark.parametrize(
    "bad, message",
    [
        (10, "must lie in 0-9, got values from 10 to 10"),
        ([3, -1], "must lie in 0-9, got values from -1 to 3"),
        ([1, 3.5], "non-integer values such as 3.5"),
        (np.array([2.5, 1.0], np.float32), "non-integer values such as 2.5"),  # what a network outputs
        (np.array([np.inf], np.float32), "NaN or infinite"),
        (float("nan"), "NaN"),
        ([[1, 2]], "scalar or 1-D, got shape (1, 2)"),
        ([], "empty"),
        (None, "is None; expected integers 0-9"),
        ("x", "must hold integers, got dtype <U1"),
        ([True], "must hold integers, got dtype bool"),
        ([[1], [1, 2]], "not an array of integers"),
    ],
)
def test_encode_addends_rejects_bad_input(bad, message):
    with pytest.raises(ValueError) as raised:
        encode_addends(bad)
    assert str(raised.value).startswith("addends") and message in str(raised.value)


def test_encode_sums_rejects_19_and_accepts_integral_floats():
    with pytest.raises(ValueError, match="sums must lie in 0-18"):
        encode_sums([19])
    assert decode_one_hot(encode_sums([18.0, 0.0])).tolist() == [18, 0]


def test_sum_labels_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match=r"addends: 1 values for 2 images, expected one per image"):
        sum_labels([1, 2], [3])


def test_decode_one_hot_takes_the_most_probable_class():
    probabilities = [[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.0, 0.0, 1.0]]
    assert decode_one_hot(probabilities).tolist() == [1, 0, 2]


@pytest.mark.parametrize("shape", [(10,), (0, 10), (3, 0), (2, 3, 10)])
def test_decode_one_hot_names_a_matrix_of_the_wrong_shape(shape):
    message = f"must be a non-empty (N, classes) matrix, got shape {shape}"
    with pytest.raises(ValueError, match=re.escape(f"guesses {message}")):
        decode_one_hot(np.zeros(shape), name="guesses")
    with pytest.raises(ValueError, match=re.escape(f"encoded {message}")):  # the default name
        decode_one_hot(np.zeros(shape))


def test_evaluation_addends_are_fixed_per_seed_and_split_and_cover_every_addend():
    validation = evaluation_addends(1_000, seed=0, split="validation")
    assert np.array_equal(validation, evaluation_addends(1_000, seed=0, split="validation"))
    assert np.bincount(validation, minlength=10).min() > 60  # every addend 0-9, about equally often
    for other in (
        evaluation_addends(1_000, seed=0, split="test"),
        evaluation_addends(1_000, seed=5, split="validation"),
    ):
        assert np.mean(other == validation) < 0.2  # about a tenth agree by chance


# --------------------------------------------------------------------------- loading


def test_load_mnist_reads_the_real_file(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60_000, 28, 28) and x_test.shape == (10_000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.tolist()[:5] == [5, 0, 4, 1, 9]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def small_mnist(test_labels=(4, 5)):
    """The four arrays of a tiny MNIST; `test_labels` tell one file from another."""
    return {
        "x_train": np.zeros((4, 28, 28), np.uint8),
        "y_train": np.array([0, 1, 2, 3], np.uint8),
        "x_test": np.zeros((len(test_labels), 28, 28), np.uint8),
        "y_test": np.array(test_labels, np.uint8),
    }


def write_npz(path, **overrides):
    arrays = small_mnist() | overrides
    np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
    return path


def test_load_mnist_prefers_the_path_argument_then_the_environment(tmp_path, monkeypatch):
    from_environment = tmp_path / "environment.npz"
    np.savez(from_environment, **small_mnist(test_labels=(7, 7, 7)))
    monkeypatch.setenv("MNIST_NPZ", str(from_environment))
    argument = write_npz(tmp_path / "argument.npz")
    assert load_mnist(argument)[1][1].tolist() == [4, 5]
    assert load_mnist()[1][1].tolist() == [7, 7, 7]
    monkeypatch.setenv("MNIST_NPZ", str(tmp_path / "missing.npz"))
    assert load_mnist(argument)[1][1].tolist() == [4, 5]  # a stale MNIST_NPZ does not matter


def test_load_mnist_downloads_when_no_file_is_named(monkeypatch):
    arrays = small_mnist()
    downloaded = ((arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"]))
    monkeypatch.delenv("MNIST_NPZ", raising=False)
    monkeypatch.setattr(keras.datasets.mnist, "load_data", lambda: downloaded)
    assert load_mnist()[1][1].tolist() == [4, 5]
    broken = ((arrays["x_train"][:, :27], arrays["y_train"]), downloaded[1])
    monkeypatch.setattr(keras.datasets.mnist, "load_data", lambda: broken)
    with pytest.raises(ValueError, match=r"MNIST train split in keras.datasets.mnist: images have shape \(4, 27, 28\)"):
        load_mnist()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"y_test": None}, r"lacks the key\(s\) \['y_test'\]"),
        ({"x_train": np.zeros((4, 28, 27), np.uint8)}, r"train split .*shape \(4, 28, 27\), expected \(N, 28, 28\)"),
        ({"x_test": np.zeros((2, 28, 28, 1), np.uint8)}, r"test split .*expected \(N, 28, 28\)"),
        ({"x_train": np.zeros((4, 28, 28), np.float32)}, "images have dtype float32, expected uint8"),
        ({"y_train": np.array([0, 1, 2, 10])}, "labels range 0..10, expected 0..9"),
        ({"y_test": np.array([-1, 5])}, "labels range -1..5, expected 0..9"),
        ({"y_train": np.array([0, 1, 2])}, r"labels have shape \(3,\), expected \(4,\) to match the images"),
        ({"y_train": np.zeros((4, 1), np.uint8)}, r"labels have shape \(4, 1\)"),
        ({"y_train": np.array([0.0, 1.0, 2.0, 3.0])}, "labels have dtype float64, expected integers"),
    ],
)
def test_load_mnist_names_file_and_problem(tmp_path, overrides, message):
    path = write_npz(tmp_path / "bad.npz", **overrides)
    with pytest.raises(ValueError, match=message) as raised:
        load_mnist(path)
    assert "bad.npz" in str(raised.value)


def test_load_mnist_refuses_pickled_objects(tmp_path):
    """np.load would run code hidden in a pickle; an .npz holding Python objects is refused, not unpickled."""
    path = write_npz(tmp_path / "pickled.npz", y_test=np.array([4, "5"], dtype=object))
    with pytest.raises(ValueError, match="pickled.npz.* is not a readable .npz file: Object arrays cannot be loaded"):
        load_mnist(path)


def test_load_mnist_failed_download_says_what_to_do(offline):
    with pytest.raises(
        FileNotFoundError, match=r"could not be downloaded .*\(train.py --data PATH\) or set the MNIST_NPZ"
    ):
        load_mnist()


def test_load_mnist_missing_and_not_npz(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        load_mnist(tmp_path / "nothing.npz")
    not_npz = tmp_path / "text.npz"
    not_npz.write_text("hello")
    with pytest.raises(ValueError, match="text.npz.* is not a readable .npz file"):
        load_mnist(not_npz)
    with pytest.raises(ValueError, match="is a directory"):
        load_mnist(tmp_path)


def test_split_is_stratified_seeded_and_keeps_each_image_with_its_label():
    labels = np.repeat(np.arange(10), 100)
    images = np.arange(1000)  # image i has label i // 100
    (x_train, y_train), (x_val, y_val) = train_validation_split(images, labels, validation_size=100, seed=1)
    assert len(x_train) == 900 and len(x_val) == 100 and not set(x_val) & set(x_train)
    assert np.bincount(y_val).tolist() == [10] * 10
    assert np.array_equal(y_train, x_train // 100) and np.array_equal(y_val, x_val // 100)
    assert np.array_equal(x_val, train_validation_split(images, labels, 100, seed=1)[1][0])
    assert not np.array_equal(np.sort(x_val), np.sort(train_validation_split(images, labels, 100, seed=2)[1][0]))


# --------------------------------------------------------------------------- augmentation


def ink_moments(images):
    """Per image: the ink's centre of mass (N, 2) in pixels and its second central moments rr, cc, rc."""
    ink = images.astype(np.float64)
    rows, cols = np.mgrid[0:28, 0:28]
    mass = ink.sum(axis=(1, 2))

    def mean(values):
        return (ink * values).sum(axis=(1, 2)) / mass

    centre_row, centre_col = mean(rows), mean(cols)
    row_offset, col_offset = rows - centre_row[:, None, None], cols - centre_col[:, None, None]
    moments = mean(row_offset**2), mean(col_offset**2), mean(row_offset * col_offset)
    return np.stack([centre_row, centre_col], axis=1), moments


def shift_of(before, after):
    """How far the centre of mass moved, per axis (pixels)."""
    return ink_moments(after)[0] - ink_moments(before)[0]


def rotation_of(before, after):
    """How far the principal axis turned (degrees), for the elongated digits (such as 1s and 7s) only:
    the axis of a round 0 is no direction to measure a turn by."""

    def axis_and_elongation(images):
        rr, cc, rc = ink_moments(images)[1]
        return 0.5 * np.degrees(np.arctan2(2 * rc, cc - rr)), np.hypot(rr - cc, 2 * rc) / (rr + cc)

    angle, elongation = axis_and_elongation(before)
    turned = (axis_and_elongation(after)[0] - angle + 90) % 180 - 90
    return turned[elongation > 0.4]


def zoom_of(before, after):
    """The relative change of the digit's size (its radius of gyration)."""

    def size(images):
        rr, cc, _ = ink_moments(images)[1]
        return np.sqrt(rr + cc)

    return size(after) / size(before) - 1


@pytest.mark.parametrize(
    "setting, measure", [("max_shift", shift_of), ("max_rotation", rotation_of), ("zoom_range", zoom_of)]
)
def test_augmentation_spreads_each_transform_evenly_over_its_configured_range(mnist, setting, measure):
    """One transform at a time on 1,000 digits, measured on the ink: it stays within train.AUGMENTATION's
    range, reaches its ends and spreads evenly over it (a uniform draw from -r to r has a spread of r/√3)."""
    (x_train, _), _ = mnist
    images = x_train[:1000]
    limit = AUGMENTATION[setting]
    only = dict.fromkeys(("max_rotation", "max_shift", "zoom_range"), 0.0) | {setting: limit}
    change = measure(images, augment_images(images, np.random.default_rng(0), **only))
    assert np.abs(change).max() == pytest.approx(limit, rel=0.1)
    assert np.std(change) == pytest.approx(limit / np.sqrt(3), rel=0.1)
    assert abs(np.mean(change)) < 0.1 * limit


def test_augmentation_without_any_transform_is_the_identity(mnist):
    (x_train, _), _ = mnist
    still = dict(max_rotation=0.0, max_shift=0.0, zoom_range=0.0)
    unchanged = augment_images(x_train[:16], np.random.default_rng(0), **still)
    assert unchanged.dtype == np.uint8
    np.testing.assert_array_equal(unchanged, x_train[:16])


class UniformField:
    """A stand-in random generator: no rotation, shift or zoom, and an elastic field that is the same everywhere."""

    def uniform(self, low, high, size):
        return np.zeros(size) if low < 0 else np.ones(size)  # angles and shifts 0, scale 1

    def standard_normal(self, size):
        return np.ones(size)


def test_an_elastic_field_is_scaled_to_move_pixels_elastic_pixels_along_each_axis(mnist):
    (x_train, _), _ = mnist
    still = dict(max_rotation=10.0, max_shift=2.0, zoom_range=0.1)
    moved = augment_images(x_train[:8], UniformField(), **still, elastic_pixels=2.0)
    np.testing.assert_array_equal(moved[:, :-2, :-2], x_train[:8, 2:, 2:])  # read 2 pixels down and right


def test_an_elastic_warp_moves_a_dot_by_about_its_strength():
    images = np.zeros((400, 28, 28), np.uint8)
    images[:, 12:15, 12:15] = 255
    still = dict(max_rotation=0.0, max_shift=0.0, zoom_range=0.0)
    warped = augment_images(images, np.random.default_rng(0), **still, elastic_pixels=2.0).astype(float)
    rows, cols = np.mgrid[0:28, 0:28]
    mass = warped.sum(axis=(1, 2))
    centre = np.stack([(warped * rows).sum(axis=(1, 2)), (warped * cols).sum(axis=(1, 2))], axis=1) / mass[:, None]
    assert 1.5 < np.sqrt(np.mean((centre - 13) ** 2)) < 2.5


def test_an_elastic_strength_of_zero_is_the_affine_warp_alone(mnist):
    (x_train, _), _ = mnist
    affine = dict(max_rotation=10.0, max_shift=2.0, zoom_range=0.1)
    alone = augment_images(x_train[:32], np.random.default_rng(3), **affine)
    np.testing.assert_array_equal(
        alone, augment_images(x_train[:32], np.random.default_rng(3), **affine, elastic_pixels=0.0)
    )


def test_rows_and_columns_shift_independently(mnist):
    (x_train, _), _ = mnist
    images = x_train[:1000]
    shifted = augment_images(images, np.random.default_rng(0), max_rotation=0.0, max_shift=2.0, zoom_range=0.0)
    down, right = shift_of(images, shifted).T
    assert abs(np.corrcoef(down, right)[0, 1]) < 0.1


class LargestDraws:
    """A stand-in random generator whose every uniform draw is the top of its range."""

    def uniform(self, low, high, size):
        return np.full(size, high, dtype=float)


def test_a_full_quarter_turn_rotates_and_never_mirrors():
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, 4:8, 6:20] = 255  # an L: a bar at the top and a stem down its left side
    image[0, 4:22, 6:10] = 200
    turned = augment_images(image, LargestDraws(), max_rotation=90.0, max_shift=0.0, zoom_range=0.0)[0]
    assert any(np.array_equal(turned, np.rot90(image[0], k)) for k in (1, 3))


def test_the_largest_shift_moves_the_image_by_that_many_pixels_and_brings_in_black():
    images = np.random.default_rng(0).integers(1, 256, (3, 28, 28), dtype=np.uint8)  # ink up to every edge
    shifted = augment_images(images, LargestDraws(), max_rotation=0.0, max_shift=3.0, zoom_range=0.0)
    expected = np.zeros_like(images)
    expected[:, 3:, 3:] = images[:, :-3, :-3]
    np.testing.assert_array_equal(shifted, expected)


def test_a_half_pixel_shift_blends_neighbouring_pixels_and_the_black_beyond_the_edge():
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, 10, 10] = image[0, 0, 0] = 200
    shifted = augment_images(image, LargestDraws(), max_rotation=0.0, max_shift=0.5, zoom_range=0.0)[0]
    assert shifted[10:12, 10:12].tolist() == [[50, 50], [50, 50]]
    assert shifted[0:2, 0:2].tolist() == [[50, 50], [50, 50]]  # the corner pixel, blended with the black border
    assert shifted.sum() == 400


def test_zoom_grows_the_digit_about_the_image_centre():
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, 10:18, 10:18] = 255  # a square centred in the frame
    zoomed = augment_images(image, LargestDraws(), max_rotation=0.0, max_shift=0.0, zoom_range=0.5)
    np.testing.assert_allclose(ink_moments(zoomed)[0], [[13.5, 13.5]], atol=0.01)  # still centred
    assert zoom_of(image, zoomed) == pytest.approx(0.5, abs=0.05)  # 1.5 times the size


def test_rotation_and_zoom_combine_into_one_transform():
    """A quarter turn of a zoomed image is the zoomed image turned a quarter (both turn about the centre)."""
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, 9:13, 9:19] = 255  # a bar, off centre
    image[0, 13:18, 9:12] = 150
    zoomed = augment_images(image, LargestDraws(), max_rotation=0.0, max_shift=0.0, zoom_range=0.5)[0]
    both = augment_images(image, LargestDraws(), max_rotation=90.0, max_shift=0.0, zoom_range=0.5)[0]
    turned = [np.rot90(zoomed, k).astype(int) for k in (1, 3)]
    assert min(np.abs(both.astype(int) - quarter).max() for quarter in turned) <= 1  # rounding only


def test_augmentation_never_flips():
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, 4:24, 4:8] = 255  # a bar on the left
    for seed in range(20):
        out = augment_images(image, np.random.default_rng(seed), **AUGMENTATION)[0].astype(float)
        assert out[:, :14].sum() > 4 * out[:, 14:].sum()


# --------------------------------------------------------------------------- data set


def batches(data):
    """Every batch of the current epoch: (inputs, targets) pairs."""
    return [data[i] for i in range(len(data))]


def epoch(data):
    """The images (N, 28, 28) and the addends of the current epoch, batches joined."""
    all_batches = batches(data)
    images = np.concatenate([inputs["image"][..., 0] for inputs, _ in all_batches])
    addends = np.concatenate([decode_one_hot(inputs["addend"]) for inputs, _ in all_batches])
    return images, addends


def assert_same_batches(one, other):
    for (inputs, targets), (other_inputs, other_targets) in zip(batches(one), batches(other), strict=True):
        for key in inputs:
            np.testing.assert_array_equal(inputs[key], other_inputs[key])
        for key in targets:
            np.testing.assert_array_equal(targets[key], other_targets[key])


def test_batches_hold_the_images_and_their_labels_in_the_epochs_order(digit_images):
    images, digits = digit_images
    data = MnistSumDataset(images, digits, batch_size=8, seed=3)
    assert len(data) == 3 and [len(b[0]["image"]) for b in batches(data)] == [8, 8, 4]  # the last one partial
    inputs, targets = data[1]
    rows = data.order[8:16]
    assert inputs["image"].shape == (8, 28, 28, 1) and inputs["image"].dtype == np.float32
    np.testing.assert_array_equal(inputs["image"][..., 0], images[rows])
    np.testing.assert_array_equal(inputs["addend"], encode_addends(data.addends[rows]))
    np.testing.assert_array_equal(targets["digit"], np.eye(10)[digits[rows]])
    np.testing.assert_array_equal(targets["sum"], np.eye(19)[digits[rows] + data.addends[rows]])
    for index in (3, -1):
        with pytest.raises(IndexError, match="out of range for 3 batches"):
            data[index]


def test_a_training_epoch_shows_every_image_once(digit_images):
    images, digits = digit_images
    data = MnistSumDataset(images, digits, batch_size=8, seed=3)
    shown, _ = epoch(data)
    assert sorted(map(bytes, shown.astype(np.uint8))) == sorted(map(bytes, images))


def test_training_redraws_order_and_addends_every_epoch(digit_images):
    images, digits = digit_images
    data = MnistSumDataset(images, digits, batch_size=8, seed=3)
    first_images, first_addends = epoch(data)
    data.on_epoch_end()
    second_images, second_addends = epoch(data)
    assert not np.array_equal(first_addends, second_addends)
    assert not np.array_equal(first_images, second_images)


def test_same_seed_same_batches_and_different_seed_differs(digit_images):
    images, digits = digit_images
    one = MnistSumDataset(images, digits, batch_size=8, seed=5, augmentation=AUGMENTATION)
    assert_same_batches(one, MnistSumDataset(images, digits, batch_size=8, seed=5, augmentation=AUGMENTATION))
    assert_same_batches(MnistSumDataset(images, digits, 8), MnistSumDataset(images, digits, 8, seed=0))  # default
    other = epoch(MnistSumDataset(images, digits, batch_size=8, seed=6, augmentation=AUGMENTATION))
    assert not np.array_equal(epoch(one)[1], other[1])
    assert not np.array_equal(epoch(one)[0], other[0])


def test_set_epoch_k_gives_the_batches_of_k_epochs_later(digit_images):
    """What a resumed run relies on: jumping to epoch k gives the very batches (order, addends and
    augmentation) that k finished epochs lead to, from any epoch it jumps from."""
    images, digits = digit_images
    walked = MnistSumDataset(images, digits, batch_size=8, seed=4, augmentation=AUGMENTATION)
    first_epoch = epoch(walked)
    for _ in range(3):
        walked.on_epoch_end()
    jumped = MnistSumDataset(images, digits, batch_size=8, seed=4, augmentation=AUGMENTATION)
    jumped.set_epoch(5)
    jumped.set_epoch(3)
    assert walked.epoch == jumped.epoch == 3
    assert_same_batches(walked, jumped)
    assert not np.array_equal(epoch(jumped)[0], first_epoch[0])


def test_evaluation_keeps_its_order_addends_and_pixels(digit_images):
    images, digits = digit_images
    addends = evaluation_addends(len(images), seed=9, split="test")
    data = MnistSumDataset(images, digits, batch_size=8, addends=addends, augmentation=AUGMENTATION)
    for epoch_number in range(3):
        data.set_epoch(epoch_number)
        shown, shown_addends = epoch(data)
        np.testing.assert_array_equal(shown, images)  # in order, never augmented
        np.testing.assert_array_equal(shown_addends, addends)


def test_training_batches_are_augmented(mnist):
    (x_train, y_train), _ = mnist
    images, digits = x_train[:64], y_train[:64]
    data = MnistSumDataset(images, digits, batch_size=64, seed=0, augmentation=AUGMENTATION)
    augmented = data[0][0]["image"][..., 0]
    originals = images[data.order].astype(np.float32)
    changed = np.abs(augmented - originals).reshape(64, -1).max(axis=1) > 50
    assert changed.mean() > 0.9  # nearly every image moved
    # ...but stays a digit of about the same ink: no flips, no wholesale loss.
    ink_ratio = augmented.sum(axis=(1, 2)) / originals.sum(axis=(1, 2))
    assert np.all((ink_ratio > 0.6) & (ink_ratio < 1.6))
    plain = MnistSumDataset(images, digits, batch_size=64, seed=0)
    np.testing.assert_array_equal(plain[0][0]["image"][..., 0], images[plain.order])


def test_augmentation_stops_after_augment_epochs(digit_images):
    images, digits = digit_images
    data = MnistSumDataset(images, digits, batch_size=20, seed=0, augmentation=AUGMENTATION, augment_epochs=2)
    for epoch_number, augmented in [(0, True), (1, True), (2, False), (5, False)]:
        data.set_epoch(epoch_number)
        assert data.augmenting is augmented
        assert np.array_equal(epoch(data)[0], images[data.order]) is not augmented


@pytest.mark.parametrize(
    "change, message",
    [
        ({"images": np.zeros((20, 28, 28), np.float32)}, r"images must be uint8 \(N, 28, 28\), got float32"),
        ({"images": np.zeros((20, 28, 27), np.uint8)}, r"got uint8 \(20, 28, 27\)"),
        ({"images": np.zeros((0, 28, 28), np.uint8), "digits": [1]}, "images is empty"),
        ({"digits": np.arange(5)}, r"digits: 5 values for 20 images"),
        ({"digits": np.full(20, 10)}, "digits must lie in 0-9"),
        ({"addends": np.zeros(19, int)}, r"addends: 19 values for 20 images"),
        ({"addends": np.full(20, -1)}, "addends must lie in 0-9"),
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"batch_size": 8.0}, "batch_size must be a positive integer, got 8.0"),
        ({"augment_epochs": -1}, "augment_epochs must be None or an integer >= 0, got -1"),
        ({"augment_epochs": 1.5}, "augment_epochs must be None or an integer >= 0, got 1.5"),
        ({"augmentation": {"max_rotation": 10.0}}, r"augmentation needs .* got \['max_rotation'\]"),
    ],
)
def test_dataset_rejects_bad_arguments(digit_images, change, message):
    images, digits = digit_images
    arguments = {"images": images, "digits": digits, "batch_size": 8} | change
    with pytest.raises(ValueError, match=message):
        MnistSumDataset(**arguments)


def test_dataset_accepts_zero_augmented_epochs_and_batches_of_one_to_all(digit_images):
    images, digits = digit_images
    data = MnistSumDataset(images, digits, batch_size=64, augmentation=AUGMENTATION, augment_epochs=0)
    assert len(data) == 1 and not data.augmenting
    np.testing.assert_array_equal(epoch(data)[0], images[data.order])
    one_by_one = MnistSumDataset(images, digits, batch_size=1)
    assert len(one_by_one) == 20 and len(epoch(one_by_one)[0]) == 20
