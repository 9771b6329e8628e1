"""Is it a digit? The signal that predict_digit_and_sum returns, and the experiment that chose its threshold."""

import sys

import numpy as np
import pytest
from conftest import ROOT

import train
from evaluate_func import DIGIT_CONFIDENCE_FLOOR, predict_digit_and_sum

sys.path.insert(0, str(ROOT / "experiments"))
import digit_or_not  # noqa: E402  (after the path is set)


@pytest.fixture(scope="module")
def validation_scores(mnist, trained_model):
    _, (x_val, _), _ = train.split_mnist(mnist, train.SEED, quick=False)
    return digit_or_not.scores(trained_model, x_val)


def test_the_floor_is_the_one_the_experiment_chooses_on_validation(validation_scores):
    chosen = digit_or_not.rule_limits("confidence", validation_scores)["confidence"]
    assert pytest.approx(chosen, abs=0.02) == DIGIT_CONFIDENCE_FLOOR


def test_few_mnist_digits_and_many_non_digits_are_flagged(mnist, trained_model):
    (_, _), (x_test, _) = mnist
    digits_flagged = 1 - predict_digit_and_sum(trained_model, x_test, 0)["looks_like_a_digit"].mean()
    images, kinds = digit_or_not.non_digits(8, seed=digit_or_not.TEST_SEED)
    others_flagged = 1 - predict_digit_and_sum(trained_model, images, 0)["looks_like_a_digit"]
    assert digits_flagged < 0.01
    assert others_flagged.mean() > 0.25
    assert set(kinds) == set(digit_or_not.KINDS) and len(images) == 8 * len(digit_or_not.KINDS)


def test_every_kind_of_non_digit_is_drawn_as_dark_strokes_on_a_white_page():
    rng = np.random.default_rng(0)
    for kind in digit_or_not.KINDS:
        page = digit_or_not.draw_non_digit(kind, rng)
        assert page.shape == (digit_or_not.CANVAS, digit_or_not.CANVAS) and page.dtype == np.uint8
        assert page.max() == 255 and 0.001 < (page < 128).mean() < 0.5, kind


def test_thresholds_flag_the_requested_share_of_made_up_digits():
    made_up = {"confidence": np.linspace(0, 1, 1001), "ink": np.linspace(0, 100, 1001)}
    confidence, either = (digit_or_not.rule_limits(rule, made_up) for rule in ("confidence", "either"))
    assert confidence["confidence"] == pytest.approx(digit_or_not.FLAGGED_DIGITS)
    assert np.mean(digit_or_not.flagged("confidence", confidence, made_up)) == pytest.approx(0.005, abs=0.001)
    assert np.mean(digit_or_not.flagged("ink", confidence, made_up)) == pytest.approx(0.005, abs=0.002)
    assert np.mean(digit_or_not.flagged("either", either, made_up)) <= digit_or_not.FLAGGED_DIGITS + 0.002
