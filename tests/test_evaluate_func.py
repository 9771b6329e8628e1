"""Prediction and evaluation: exact figures from a scripted stand-in model, the API on the untrained network,
and the quality of the committed model.zip."""

import warnings

import keras
import numpy as np
import pytest
from conftest import ROOT

from data_creation import EVALUATION_BATCH, as_mnist_batch, evaluation_addends
from evaluate_func import (
    ONE_PIXEL_SHIFTS,
    addition_table,
    evaluate_model,
    predict_digit_and_sum,
    read_metadata,
)

COMMITTED_MODEL = ROOT / "model.zip"
DIGIT_CONFIDENCE, SUM_CONFIDENCE = 0.8, 0.6


def scripted_model(inputs, training=False):
    """A stand-in for the network whose answers a test chooses through two pixels of each image.

    It reads the digit as pixel (0, 0) / 20 and answers it with probability 0.8; it answers the sum
    of that digit, the addend and pixel (0, 1) (a slip of 0 or 1) with probability 0.6.
    """
    corner = keras.ops.cast(inputs["image"][:, 0, :2, 0], "int32")
    seen, slip = corner[:, 0] // 20, corner[:, 1]
    addend = keras.ops.cast(keras.ops.argmax(inputs["addend"], axis=1), "int32")
    return {
        "digit": confident(seen, 10, DIGIT_CONFIDENCE),
        "sum": confident((seen + addend + slip) % 19, 19, SUM_CONFIDENCE),
    }


def confident(classes, count, probability):
    """Rows that give `classes` `probability` and share the rest evenly among the other classes."""
    one_hot = keras.ops.one_hot(classes, count)
    return one_hot * probability + (1 - one_hot) * (1 - probability) / (count - 1)


def scripted_images(seen, slips=None):
    """Blank images with the digit the scripted model will see, and its slips, written in."""
    images = np.zeros((len(seen), 28, 28), np.uint8)
    images[:, 0, 0] = 20 * np.asarray(seen)
    images[:, 0, 1] = 0 if slips is None else slips
    return images


# --------------------------------------------------------------------------- prediction


@pytest.mark.parametrize("shape, count", [((28, 28), 1), ((28, 28, 1), 1), ((4, 28, 28), 4), ((4, 28, 28, 1), 4)])
def test_the_network_takes_single_images_and_batches(untrained_model, shape, count):
    result = predict_digit_and_sum(untrained_model, np.full(shape, 30, np.uint8), 3)
    assert result["digit"].shape == result["sum"].shape == (count,)
    assert result["digit_probability"].shape == (count, 10) and result["sum_probability"].shape == (count, 19)
    np.testing.assert_allclose(result["sum_probability"].sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(result["sum"], result["sum_probability"].argmax(axis=1))


def test_predictions_are_the_networks_inference_output(untrained_model):
    """Dropout off and batch norm on its moving statistics, so the same images always get the same answer."""
    images = np.random.default_rng(0).integers(0, 256, (6, 28, 28)).astype(np.float32)
    addends = [0, 3, 9, 1, 1, 5]
    expected = untrained_model({"image": images[..., None], "addend": np.eye(10)[addends]}, training=False)
    for _ in range(2):
        result = predict_digit_and_sum(untrained_model, images, addends)
        np.testing.assert_allclose(result["digit_probability"], expected["digit"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(result["sum_probability"], expected["sum"], rtol=1e-5, atol=1e-7)


def moved_by(images, rows, cols):
    """(N, 28, 28) images moved down `rows` and right `cols` pixels (at most one), black coming in."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    return padded[:, 1 - rows : 29 - rows, 1 - cols : 29 - cols]


def test_test_time_shifts_average_the_probabilities_of_the_shifted_images(untrained_model):
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28)).astype(np.float32)
    averaged = predict_digit_and_sum(untrained_model, images, 4, shifts=ONE_PIXEL_SHIFTS)
    one_by_one = [predict_digit_and_sum(untrained_model, moved_by(images, *shift), 4) for shift in ONE_PIXEL_SHIFTS]
    for output in ("digit_probability", "sum_probability"):
        expected = np.mean([result[output] for result in one_by_one], axis=0)
        np.testing.assert_allclose(averaged[output], expected, rtol=1e-5, atol=1e-7)
        assert not np.array_equal(averaged[output], one_by_one[0][output])  # the shifts count
    np.testing.assert_array_equal(averaged["digit"], averaged["digit_probability"].argmax(axis=1))
    assert sorted(ONE_PIXEL_SHIFTS) == [(-1, 0), (0, -1), (0, 0), (0, 1), (1, 0)]


def test_predictions_over_several_compiled_batches_stay_in_order():
    count = 2 * EVALUATION_BATCH + 37
    seen, addends = np.arange(count) % 10, (np.arange(count) // 10) % 10
    result = predict_digit_and_sum(scripted_model, scripted_images(seen), addends)
    np.testing.assert_array_equal(result["digit"], seen)
    np.testing.assert_array_equal(result["sum"], seen + addends)
    np.testing.assert_allclose(result["digit_probability"].max(axis=1), DIGIT_CONFIDENCE, rtol=1e-6)


def test_one_addend_serves_every_image():
    images = scripted_images([1, 5])
    assert predict_digit_and_sum(scripted_model, images, 7)["sum"].tolist() == [8, 12]
    assert predict_digit_and_sum(scripted_model, images, [7])["sum"].tolist() == [8, 12]
    assert predict_digit_and_sum(scripted_model, images[:1], [7])["sum"].tolist() == [8]


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((28, 27)), r"must have shape \(28, 28\), \(N, 28, 28\) or \(N, 28, 28, 1\), got \(28, 27\)"),
        ([[0] * 28] * 27 + [[0] * 27], "is not an array of numbers 0-255"),
        (np.zeros((0, 28, 28)), "empty"),
        (np.full((28, 28), np.nan), "NaN"),
        (np.full((28, 28), np.inf), "infinite"),
        (np.full((28, 28), -1.0), "0-255"),
        (np.full((28, 28), 256.0), "0-255"),
        (np.zeros((28, 28), bool), "dtype"),
        (np.zeros((28, 28), object), "dtype"),
    ],
)
def test_bad_images_are_named(images, message):
    with pytest.raises(ValueError, match=message) as raised:
        as_mnist_batch(images)
    assert str(raised.value).startswith("images")


@pytest.mark.parametrize(
    "addends, message",
    [
        (10, "must lie in 0-9"),
        (-1, "must lie in 0-9"),
        (3.5, "non-integer"),
        (float("nan"), "NaN"),
        ("x", "must hold integers"),
        (None, "is None"),
        ([], "is empty"),
        ([1, 2, 3], r"addends: 3 values for 2 images"),
    ],
)
def test_bad_addends_are_named(addends, message):
    with pytest.raises(ValueError, match=message) as raised:
        predict_digit_and_sum(scripted_model, np.zeros((2, 28, 28)), addends)
    assert str(raised.value).startswith("addends")


# --------------------------------------------------------------------------- evaluation


def report_supports(report):
    """{class: support} from the rows of a scikit-learn classification report."""
    rows = (line.split() for line in report.splitlines())
    return {int(row[0]): int(row[-1]) for row in rows if row and row[0].isdigit()}


def report_row(report, label):
    """The words of the row of class `label` in a scikit-learn classification report."""
    return next(line.split() for line in report.splitlines() if line.split()[:1] == [str(label)])


def test_evaluation_figures_are_exact_for_a_model_with_known_mistakes():
    """Twenty images; the model misreads image 3 (a 3 seen as an 8, so its sum is wrong too) and slips
    on the sum of image 12 (its digit right): every figure of the report follows from that."""
    digits = np.arange(20) % 10
    addends = np.arange(20) % 7
    seen = digits.copy()
    seen[3] = 8
    slips = np.zeros(20, int)
    slips[12] = 1
    report = evaluate_model(scripted_model, scripted_images(seen, slips), digits, addends)

    assert report["digit_accuracy"] == 19 / 20 and report["sum_accuracy"] == 18 / 20
    assert report["consistency"] == 19 / 20  # only the slip breaks predicted digit + addend = predicted sum
    assert report["misclassified"].tolist() == [3, 12]
    right, wrong = -np.log(DIGIT_CONFIDENCE), -np.log((1 - DIGIT_CONFIDENCE) / 9)
    assert report["digit_loss"] == pytest.approx((19 * right + wrong) / 20, rel=1e-5)
    right, wrong = -np.log(SUM_CONFIDENCE), -np.log((1 - SUM_CONFIDENCE) / 18)
    assert report["sum_loss"] == pytest.approx((18 * right + 2 * wrong) / 20, rel=1e-5)

    expected_digits = 2 * np.eye(10, dtype=int)
    expected_digits[3, 3], expected_digits[3, 8] = 1, 1
    np.testing.assert_array_equal(report["digit_confusion"], expected_digits)
    true_sums = digits + addends
    assert report["sum_confusion"].shape == (19, 19)
    assert report["sum_confusion"][true_sums[3], 8 + addends[3]] == 1
    assert report["sum_confusion"][true_sums[12], true_sums[12] + 1] == 1
    assert np.trace(report["sum_confusion"]) == 18

    assert report_row(report["digit_report"], 3) == ["3", "1.0000", "0.5000", "0.6667", "2"]  # one of two 3s found
    assert report_row(report["sum_report"], 18) == ["18", "0.0000", "0.0000", "0.0000", "0"]  # never true, never said
    assert report_supports(report["digit_report"]) == dict.fromkeys(range(10), 2)
    assert report_supports(report["sum_report"]) == dict(enumerate(np.bincount(true_sums, minlength=19).tolist()))
    np.testing.assert_array_equal(report["predictions"]["digit"], seen)


@pytest.mark.parametrize(
    "images, digits, addends, message",
    [
        (scripted_images(range(9)), range(10), range(10), r"digits: 10 values for 9 images"),
        (scripted_images(range(10)), range(10), range(9), r"addends: 9 values for 10 images"),
        (scripted_images(range(10)), [10] * 10, range(10), "digits must lie in 0-9"),
        (scripted_images(range(10)), range(10), [10] * 10, "addends must lie in 0-9"),
    ],
)
def test_evaluation_names_what_does_not_match(images, digits, addends, message):
    with pytest.raises(ValueError, match=message):
        evaluate_model(scripted_model, images, digits, addends)


def test_figures_cover_every_class_even_when_a_set_lacks_some():
    """A class that is never true and never predicted gets zeros in the reports, quietly (no warnings)."""
    digits = np.array([1, 2, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = evaluate_model(scripted_model, scripted_images(digits), digits, [0, 0, 1])
    assert report["digit_confusion"].shape == (10, 10) and report["sum_confusion"].shape == (19, 19)
    assert sorted(report_supports(report["digit_report"])) == list(range(10))
    assert sorted(report_supports(report["sum_report"])) == list(range(19))
    assert report_row(report["digit_report"], 5) == ["5", "0.0000", "0.0000", "0.0000", "0"]
    assert report_row(report["sum_report"], 9) == ["9", "0.0000", "0.0000", "0.0000", "0"]


def test_addition_table_asks_the_first_image_of_each_digit_every_addend():
    digits = np.array([5, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3])
    seen = digits.copy()
    seen[0] = 6  # the first 5 is read as a 6 ...
    seen[11] = 9  # ... and a later 3 as a 9, which the table never asks about
    table = addition_table(scripted_model, scripted_images(seen), digits)
    expected = np.add.outer(np.arange(10), np.arange(10))
    expected[5] += 1
    np.testing.assert_array_equal(table, expected)
    assert addition_table(scripted_model, scripted_images(seen), digits, addends=[0, 9]).tolist()[5] == [6, 15]


def test_addition_table_without_every_digit_says_which_are_missing():
    digits = np.array([0, 1, 2, 4, 5, 6, 7, 8, 0])
    with pytest.raises(ValueError, match=r"needs an image of every digit 0-9; digits has none of \[3, 9\]"):
        addition_table(scripted_model, scripted_images(digits), digits)


# --------------------------------------------------------------------------- the committed model


def test_committed_model_metadata_records_the_run(trained_model):
    metadata = read_metadata(COMMITTED_MODEL)
    for key in ("seed", "epochs_run", "data_sha256", "code_version", "versions", "model_sha256"):
        assert key in metadata
    assert metadata["settings"]["quick"] is False and metadata["test_images"] == 10_000


def test_committed_model_scores_what_train_py_recorded(trained_model, mnist):
    """evaluate_model on the test images with train.py's test addends gives the accuracies in the metadata."""
    _, (x_test, y_test) = mnist
    metadata = read_metadata(COMMITTED_MODEL)
    addends = evaluation_addends(len(y_test), metadata["seed"], "test")
    report = evaluate_model(trained_model, x_test, y_test, addends)
    assert report["digit_accuracy"] == pytest.approx(metadata["test_digit_accuracy"], abs=1e-6)
    assert report["sum_accuracy"] == pytest.approx(metadata["test_sum_accuracy"], abs=1e-6)
    assert report["digit_accuracy"] >= 0.995 and report["sum_accuracy"] >= 0.995
    assert report["consistency"] >= 0.999


def test_committed_model_adds_every_pair(trained_model, mnist):
    _, (x_test, y_test) = mnist
    table = addition_table(trained_model, x_test, y_test)
    np.testing.assert_array_equal(table, np.add.outer(np.arange(10), np.arange(10)))


def test_committed_model_reads_raw_pixels_not_fractions(trained_model, mnist):
    """The network scales 0-255 pixels itself: images already divided by 255 are read at chance level."""
    _, (x_test, y_test) = mnist
    raw = predict_digit_and_sum(trained_model, x_test[:2000], 0)["digit"]
    fractions = predict_digit_and_sum(trained_model, x_test[:2000] / 255, 0)["digit"]
    assert np.mean(raw == y_test[:2000]) > 0.99 and np.mean(fractions == y_test[:2000]) < 0.5
