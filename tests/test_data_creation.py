"""Encoders, MNIST loading and the Keras data set."""

import numpy as np
import pytest

from train import AUGMENTATION
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
        (10, "0-9"),
        (-1, "0-9"),
        (3.5, "non-integer"),
        (float("nan"), "NaN"),
        ([[1, 2]], "1-D"),
        ([], "empty"),
        (None, "None"),
        ("x", "integers"),
        ([True], "integers"),
    ],
)
def test_encode_addends_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message) as raised:
        encode_addends(bad)
    assert "addends" in str(raised.value)


def test_encode_sums_rejects_19_and_accepts_integral_floats():
    with pytest.raises(ValueError, match="sums must lie in 0-18"):
        encode_sums([19])
    assert decode_one_hot(encode_sums([18.0])).tolist() == [18]


def test_sum_labels_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        sum_labels([1, 2], [3])


# --------------------------------------------------------------------------- loading


def test_load_mnist_reads_the_real_file(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60_000, 28, 28) and x_test.shape == (10_000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.tolist()[:5] == [5, 0, 4, 1, 9]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _write_npz(path, **overrides):
    arrays = {
        "x_train": np.zeros((4, 28, 28), np.uint8),
        "y_train": np.array([0, 1, 2, 3], np.uint8),
        "x_test": np.zeros((2, 28, 28), np.uint8),
        "y_test": np.array([4, 5], np.uint8),
    }
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_load_mnist_prefers_argument_then_environment(tmp_path, monkeypatch):
    path = _write_npz(tmp_path / "small.npz")
    monkeypatch.setenv("MNIST_NPZ", str(path))
    (x_train, _), (x_test, y_test) = load_mnist()
    assert len(x_train) == 4 and y_test.tolist() == [4, 5]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"y_test": None}, "lacks the key"),
        ({"x_train": np.zeros((4, 28, 27), np.uint8)}, r"expected \(N, 28, 28\)"),
        ({"x_train": np.zeros((4, 28, 28), np.float32)}, "expected uint8"),
        ({"y_train": np.array([0, 1, 2, 10])}, "expected 0..9"),
        ({"y_train": np.array([0, 1, 2])}, "to match the images"),
    ],
)
def test_load_mnist_names_file_and_problem(tmp_path, overrides, message):
    path = _write_npz(tmp_path / "bad.npz", **overrides)
    with pytest.raises(ValueError, match=message) as raised:
        load_mnist(path)
    assert "bad.npz" in str(raised.value)


def test_load_mnist_failed_download_says_what_to_do(offline):
    with pytest.raises(FileNotFoundError, match="could not be downloaded.*MNIST_NPZ"):
        load_mnist()


def test_load_mnist_missing_and_not_npz(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        load_mnist(tmp_path / "nothing.npz")
    not_npz = tmp_path / "text.npz"
    not_npz.write_text("hello")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_mnist(not_npz)
    with pytest.raises(ValueError, match="directory"):
        load_mnist(tmp_path)


def test_split_is_stratified_and_seeded():
    labels = np.repeat(np.arange(10), 100)
    images = np.arange(1000)
    (x_a, y_a), (xv_a, yv_a) = train_validation_split(images, labels, validation_size=100, seed=1)
    (x_b, _), (xv_b, _) = train_validation_split(images, labels, validation_size=100, seed=1)
    assert len(x_a) == 900 and len(xv_a) == 100
    assert np.bincount(yv_a).tolist() == [10] * 10
    assert np.array_equal(xv_a, xv_b) and not set(xv_a) & set(x_a)


# --------------------------------------------------------------------------- data set


def test_batches_have_named_shapes_dtypes_and_consistent_labels(digit_images):
    images, digits = digit_images
    data = MnistSumDataset(images, digits, batch_size=8, seed=3)
    assert len(data) == 3
    inputs, targets = data[0]
    assert inputs["image"].shape == (8, 28, 28, 1) and inputs["image"].dtype == np.float32
    assert inputs["addend"].shape == (8, 10) and targets["digit"].shape == (8, 10)
    assert targets["sum"].shape == (8, 19)
    assert inputs["image"].min() >= 0 and inputs["image"].max() <= 255
    expected_sum = decode_one_hot(targets["digit"]) + decode_one_hot(inputs["addend"])
    assert decode_one_hot(targets["sum"]).tolist() == expected_sum.tolist()
    assert data[2][0]["image"].shape[0] == 4  # the last, partial batch
    with pytest.raises(IndexError):
        data[3]


def _epoch(data):
    batches = [data[i] for i in range(len(data))]
    images = np.concatenate([b[0]["image"] for b in batches])
    addends = np.concatenate([decode_one_hot(b[0]["addend"]) for b in batches])
    return images, addends


def test_training_redraws_order_and_addends_every_epoch(digit_images):
    images, digits = digit_images
    data = MnistSumDataset(images, digits, batch_size=8, seed=3)
    first_images, first_addends = _epoch(data)
    data.on_epoch_end()
    second_images, second_addends = _epoch(data)
    assert not np.array_equal(first_addends, second_addends)
    assert not np.array_equal(first_images, second_images)


def test_same_seed_same_batches_and_different_seed_differs(digit_images):
    images, digits = digit_images
    one = _epoch(MnistSumDataset(images, digits, batch_size=8, seed=5))
    two = _epoch(MnistSumDataset(images, digits, batch_size=8, seed=5))
    other = _epoch(MnistSumDataset(images, digits, batch_size=8, seed=6))
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[1], two[1])
    assert not np.array_equal(one[1], other[1])


def test_evaluation_keeps_order_addends_and_pixels(digit_images):
    images, digits = digit_images
    addends = evaluation_addends(len(images), seed=9, split="test")
    data = MnistSumDataset(images, digits, batch_size=8, addends=addends)
    first_images, first_addends = _epoch(data)
    data.on_epoch_end()
    again_images, again_addends = _epoch(data)
    assert np.array_equal(first_addends, again_addends)
    assert np.array_equal(first_images[..., 0], images)  # in order, not augmented
    assert np.array_equal(again_images, first_images)
    same_seed = _epoch(MnistSumDataset(images, digits, batch_size=8, addends=evaluation_addends(20, 9, "test")))[1]
    assert np.array_equal(same_seed, first_addends)


def test_training_batches_are_augmented(mnist):
    (x_train, y_train), _ = mnist
    images, digits = x_train[:64], y_train[:64]
    data = MnistSumDataset(images, digits, batch_size=64, seed=0, augmentation=AUGMENTATION)
    augmented = data[0][0]["image"][..., 0]
    originals = images[data.order[:64]].astype(np.float32)
    changed = np.abs(augmented - originals).reshape(64, -1).max(axis=1) > 50
    assert changed.mean() > 0.9  # nearly every image moved
    # ...but stays a digit of about the same ink: no flips, no wholesale loss.
    ink_ratio = augmented.sum(axis=(1, 2)) / originals.sum(axis=(1, 2))
    assert np.all((ink_ratio > 0.6) & (ink_ratio < 1.6))
    plain = MnistSumDataset(images, digits, batch_size=64, seed=0, augmentation=None)
    assert np.array_equal(plain[0][0]["image"][..., 0], images[plain.order].astype(np.float32))


def test_augmentation_stops_after_augment_epochs(mnist):
    (x_train, y_train), _ = mnist
    images, digits = x_train[:64], y_train[:64]
    data = MnistSumDataset(images, digits, batch_size=64, seed=0, augmentation=AUGMENTATION, augment_epochs=2)
    for epoch, augmented in [(0, True), (1, True), (2, False), (5, False)]:
        data.set_epoch(epoch)
        batch = data[0][0]["image"][..., 0]
        assert data.augmenting is augmented
        assert np.array_equal(batch, images[data.order].astype(np.float32)) is not augmented


def test_augmentation_without_any_transform_is_the_identity(mnist):
    (x_train, _), _ = mnist
    still = dict(max_rotation=0.0, max_shift=0.0, zoom_range=0.0)
    np.testing.assert_array_equal(augment_images(x_train[:16], np.random.default_rng(0), **still), x_train[:16])


def test_augmentation_never_flips():
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, 4:24, 4:8] = 255  # a bar on the left
    for seed in range(20):
        out = augment_images(image, np.random.default_rng(seed), **AUGMENTATION)[0].astype(float)
        assert out[:, :14].sum() > 4 * out[:, 14:].sum()


def test_dataset_rejects_bad_arguments(digit_images):
    images, digits = digit_images
    with pytest.raises(ValueError, match="uint8"):
        MnistSumDataset(images.astype(np.float32), digits, 8)
    with pytest.raises(ValueError, match="differ in length"):
        MnistSumDataset(images, digits[:5], 8)
    with pytest.raises(ValueError, match="batch_size"):
        MnistSumDataset(images, digits, batch_size=0)
    with pytest.raises(ValueError, match="augment_epochs"):
        MnistSumDataset(images, digits, 8, augment_epochs=-1)
