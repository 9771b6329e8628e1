"""Does it add? The sum heads, training with withheld (digit, addend) pairs, and experiments/unseen_pairs.py."""

import csv
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, own_stderr_lines

from data_creation import MnistSumDataset, check_allowed_pairs, draw_allowed_addends, evaluation_addends
from evaluate_func import read_addend_values
from network_architecture import SUM_HEADS, AddDistributions, build_model

sys.path.insert(0, str(ROOT / "experiments"))
import results_file  # noqa: E402  (after the path is set)
import unseen_pairs  # noqa: E402


def random_distributions(rng, rows, classes):
    values = rng.random((rows, classes)) ** 4  # some peaked, some flat
    return (values / values.sum(axis=1, keepdims=True)).astype("float32")


# ----------------------------------------------------------------------------- the heads


def test_add_distributions_gives_the_distribution_of_the_sum_of_two_numbers():
    """P(a + b = s) for independent a and b is the convolution of their distributions."""
    rng = np.random.default_rng(0)
    a, b = random_distributions(rng, 6, 10), random_distributions(rng, 6, 10)
    total = np.asarray(AddDistributions()([a, b]))
    expected = np.stack([np.convolve(row_a, row_b) for row_a, row_b in zip(a, b, strict=True)])
    np.testing.assert_allclose(total, expected, atol=1e-6)
    one_hot = np.eye(10, dtype="float32")
    assert np.asarray(AddDistributions()([one_hot[[3]], one_hot[[9]]])).argmax() == 12  # 3 + 9


@pytest.mark.parametrize("head", sorted(SUM_HEADS))
def test_every_head_answers_a_probability_distribution_over_the_sums_0_to_18(head):
    model = build_model(head)
    rng = np.random.default_rng(1)
    inputs = {"image": rng.integers(0, 256, (5, 28, 28, 1)).astype("float32"), "addend": np.eye(10)[[0, 2, 4, 6, 9]]}
    total = np.asarray(model(inputs)["sum"])
    assert total.shape == (5, 19) and (total >= 0).all()
    np.testing.assert_allclose(total.sum(axis=1), 1.0, rtol=1e-5)
    assert {t.name for t in model.inputs} == {"image", "addend"} and set(model.output_names) == {"digit", "sum"}


def test_the_number_line_head_adds_what_it_reads_of_the_addend():
    """The number_line head's only weights read the addend's value; set them to "a means a" and the sum is the
    digit's probabilities moved a places along the number line, whatever the image."""
    model = build_model("number_line")
    assert not model.get_layer("sum").weights
    model.get_layer("addend_hidden").set_weights([np.eye(10, 32), np.zeros(32)])  # the one-hot, passed on
    model.get_layer("addend_value").set_weights([20 * np.eye(32, 10), np.zeros(10)])  # one-hot a -> value a
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (1, 28, 28, 1)).astype("float32")
    digit = np.asarray(model({"image": image, "addend": np.eye(10)[[0]]})["digit"])[0]
    for addend in (0, 4, 9):
        total = np.asarray(model({"image": image, "addend": np.eye(10)[[addend]]})["sum"])[0]
        np.testing.assert_allclose(total[addend : addend + 10], digit, atol=1e-5)


def test_read_addend_values_gives_each_addends_reading_and_refuses_a_table_head():
    model = build_model("number_line")
    model.get_layer("addend_hidden").set_weights([np.eye(10, 32), np.zeros(32)])
    model.get_layer("addend_value").set_weights([20 * np.eye(32, 10)[:, ::-1], np.zeros(10)])  # a is read as 9 - a
    values = read_addend_values(model)
    assert values.shape == (10, 10) and np.array_equal(values.argmax(axis=1), 9 - np.arange(10))
    np.testing.assert_allclose(values.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="has no number_line sum head"):
        read_addend_values(build_model("outer_product"))


def test_an_unknown_head_is_a_value_error_naming_the_choices():
    with pytest.raises(ValueError, match="sum_head must be one of .*'number_line'.*got 'table'"):
        build_model("table")


def test_the_adding_model_loads_safely_without_its_module_imported(tmp_path):
    """A fresh process that imports only evaluate_func loads a saved number_line model (with its registered
    AddDistributions layer) with safe_mode=True and computes the same sums."""
    model = build_model("number_line")
    path = tmp_path / "model.keras"
    model.save(path)
    image = np.random.default_rng(3).integers(0, 256, (28, 28)).astype("float32")
    expected = np.asarray(model({"image": image[None, :, :, None], "addend": np.eye(10)[[7]]})["sum"])[0]
    np.save(tmp_path / "image.npy", image)
    script = (
        "import sys, numpy as np; from evaluate_func import load_saved_model, predict_digit_and_sum; "
        f"m = load_saved_model({str(path)!r}); assert 'network_architecture' in sys.modules; "
        f"print(*predict_digit_and_sum(m, np.load({str(tmp_path / 'image.npy')!r}), 7)['sum_probability'][0])"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose([float(value) for value in done.stdout.split()], expected, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- withheld pairs


def test_allowed_addends_are_drawn_evenly_among_the_allowed_pairs_only():
    table = np.zeros((10, 10), bool)
    table[:, 0] = True
    table[3, [2, 5, 7]] = True
    digits = np.repeat(np.arange(10), 3_000)
    addends = draw_allowed_addends(digits, np.random.default_rng(0), table)
    assert table[digits, addends].all()
    counts = np.bincount(addends[digits == 3], minlength=10)
    assert set(np.flatnonzero(counts)) == {0, 2, 5, 7}
    assert counts[[0, 2, 5, 7]].min() > 3_000 / 4 * 0.85  # each of the four about a quarter of the time
    assert (addends[digits != 3] == 0).all()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (np.ones((10, 9), bool), r"\(10, 10\) boolean table, got bool \(10, 9\)"),
        (np.ones((10, 10), int), "boolean table, got int64"),
        (np.eye(10, dtype=bool)[[0, 1, 2, 3, 4, 5, 6, 7, 8, 8]] & (np.arange(10) != 6)[:, None], r"digit\(s\) \[6\]"),
    ],
)
def test_a_bad_table_of_allowed_pairs_is_a_value_error_naming_the_problem(table, message):
    with pytest.raises(ValueError, match=message):
        check_allowed_pairs(table)


def test_a_training_set_with_withheld_pairs_never_shows_them(digit_images):
    images, digits = digit_images
    table = unseen_pairs.allowed_pairs("latin10")
    data = MnistSumDataset(images, digits, 8, seed=0, allowed_pairs=table)
    for epoch in range(20):
        data.set_epoch(epoch)
        for index in range(len(data)):
            inputs, targets = data[index]
            shown_digits, shown_addends = targets["digit"].argmax(1), inputs["addend"].argmax(1)
            assert table[shown_digits, shown_addends].all()


def test_validation_addends_with_withheld_pairs_are_fixed_and_allowed():
    digits = np.arange(1_000) % 10
    table = unseen_pairs.allowed_pairs("keep20")
    addends = evaluation_addends(1_000, 0, "validation", digits, table)
    assert table[digits, addends].all()
    assert np.array_equal(addends, evaluation_addends(1_000, 0, "validation", digits, table))
    with pytest.raises(ValueError, match="needs the digits of the 1000 images"):
        evaluation_addends(1_000, 0, "validation", allowed_pairs=table)


def test_the_latin_square_withholds_one_addend_per_digit_and_one_digit_per_addend():
    table = unseen_pairs.allowed_pairs("latin10")
    withheld = np.argwhere(~table)
    assert len(withheld) == 10
    assert sorted(withheld[:, 0]) == list(range(10)) and sorted(withheld[:, 1]) == list(range(10))
    assert {(digit, (3 * digit + 1) % 10) for digit in range(10)} == {tuple(pair) for pair in withheld}
    assert unseen_pairs.allowed_pairs("all").all()


@pytest.mark.parametrize("kept", [10, 20, 50])
def test_keeping_k_pairs_keeps_every_digit_and_every_addend(kept):
    table = unseen_pairs.allowed_pairs(f"keep{kept}")
    assert table.sum() == kept and table.any(axis=0).all() and table.any(axis=1).all()
    assert np.array_equal(table, unseen_pairs.allowed_pairs(f"keep{kept}"))  # the same set for every run


@pytest.mark.parametrize("name", ["keep9", "keep101", "latin", "none"])
def test_an_unknown_withheld_set_is_refused_with_exit_status_2(name):
    done = subprocess.run(
        [sys.executable, "experiments/unseen_pairs.py", "--withheld", name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert own_stderr_lines(done.stderr)[-1].endswith(f"unknown withheld set {name!r}: use 'all', 'latin10' or "
                                                       "'keepK' with K from 10 to 100")  # fmt: skip


def test_the_summary_table_gives_mean_and_spread_over_seeds():
    rows = [
        {"head": "h", "withheld": "latin10", "epochs": "4", "head_parameters": "110", "test_digit_accuracy": digit,
         "test_sum_accuracy": "0.5", "seen_sum_accuracy": "0.9", "unseen_sum_accuracy": unseen}
        for digit, unseen in (("0.99", "0.10"), ("0.97", "0.30"))
    ]  # fmt: skip
    last = unseen_pairs.summary_table(rows).splitlines()[-1]
    assert last == "| h | latin10 | 4 | 2 | 110 | 98.00 ± 1.41 | 50.00 ± 0.00 | 90.00 ± 0.00 | 20.00 ± 14.14 |"
    assert results_file.mean_and_sd([float("nan")]) == "-"


# ----------------------------------------------------------------------------- the experiment itself


@pytest.mark.slow
def test_the_experiment_tells_a_table_head_from_an_adding_head(mnist, tmp_path):
    """On train.py's small subset with ten pairs withheld, the outer-product head answers the pairs it saw
    and none of the others; the number_line head answers the unseen pairs as well as the seen ones. A
    second call finds both runs in the results file and trains nothing."""
    results = tmp_path / "results.csv"
    arguments = ["--quick", "--heads", "outer_product", "number_line", "--withheld", "latin10", "--seeds", "0"]
    assert unseen_pairs.main([*arguments, "--epochs", "5", "--results", str(results)]) == 0
    with open(results, newline="") as handle:
        rows = {row["head"]: row for row in csv.DictReader(handle)}
    table, adding = rows["outer_product"], rows["number_line"]
    for row in rows.values():
        assert float(row["test_digit_accuracy"]) > 0.95 and int(row["withheld_pairs"]) == 10
    assert float(table["seen_sum_accuracy"]) > 0.9 and float(table["unseen_sum_accuracy"]) < 0.02
    assert float(adding["unseen_sum_accuracy"]) > 0.8
    assert abs(float(adding["unseen_sum_accuracy"]) - float(adding["seen_sum_accuracy"])) < 0.03
    assert int(adding["head_parameters"]) == 682 and int(table["head_parameters"]) == 7_699
    before = results.read_text()
    assert unseen_pairs.main([*arguments, "--epochs", "5", "--results", str(results)]) == 0
    assert results.read_text() == before
