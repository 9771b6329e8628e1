"""experiments/seeded_study.py: a killed study resumes without repeating a run, the table pairs arms by seed,
and one tiny real run trains the arm's recipe and leaves train.py's own untouched."""

import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "experiments"))
import seeded_study  # noqa: E402  (after the path is set)
from results_file import read_results  # noqa: E402


def made_up_row(arm, seed, accuracy=0.99):
    """A results row with every field, its accuracies all `accuracy`."""
    row = dict.fromkeys(seeded_study.FIELDS, "x") | {"arm": arm, "seed": seed, "training_seconds": 100.0}
    return row | {field: accuracy for field in seeded_study.FIELDS if field.endswith("accuracy")}


def test_a_killed_study_continues_where_it_stopped_without_repeating_a_run(tmp_path):
    results, calls = tmp_path / "study.csv", []

    def killed_at_the_fourth_run(arm, seed):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append((arm, seed))
        return made_up_row(arm, seed)

    with pytest.raises(KeyboardInterrupt):
        seeded_study.run_study(["base", "label_smoothing"], [0, 1], results, killed_at_the_fourth_run)
    assert calls == [("base", 0), ("label_smoothing", 0), ("base", 1)]  # seeds outermost
    assert [(row["arm"], row["seed"]) for row in read_results(results)] == [
        ("base", "0"),
        ("label_smoothing", "0"),
        ("base", "1"),
    ]

    def resumed(arm, seed):
        calls.append((arm, seed))
        return made_up_row(arm, seed)

    seeded_study.run_study(["base", "label_smoothing"], [0, 1], results, resumed)
    assert calls[3:] == [("label_smoothing", 1)]
    assert len(read_results(results)) == 4


def test_the_table_pairs_each_arm_with_the_base_run_of_the_same_seed():
    rows = [
        made_up_row("base", 0, 0.9960),
        made_up_row("base", 1, 0.9970),
        made_up_row("base", 2, 0.9900),  # no wider run with seed 2: left out of the pairs
        made_up_row("wider_fewer_epochs", 0, 0.9970),
        made_up_row("wider_fewer_epochs", 1, 0.9974),
    ]
    assert seeded_study.paired_differences(rows, "wider_fewer_epochs", "test_digit_accuracy") == pytest.approx(
        [0.10, 0.04]
    )
    lines = seeded_study.study_table(rows).splitlines()
    base, wider = (line.split(" | ") for line in lines[2:])
    assert base[:3] == ["| base", "0,1,2", "99.43 ± 0.38"]
    assert base[6] == "99.00-99.70" and base[7:11] == ["", "", "", ""]
    assert wider[:3] == ["| wider_fewer_epochs", "0,1", "99.72 ± 0.03"]
    assert wider[7:11] == ["0.07 ± 0.04"] * 4  # mean and sd of +0.10 and +0.04
    assert wider[11] == "0.00 ± 0.00"  # test-time augmentation changes nothing in these made-up runs
    assert wider[-1] == "100 |"


@pytest.mark.slow
def test_a_tiny_run_trains_the_arms_recipe_and_restores_train_pys(mnist, monkeypatch, tmp_path):
    import train

    monkeypatch.setitem(train.QUICK, "train_images", 512)
    monkeypatch.setitem(train.QUICK, "test_images", 500)
    base_width = train.WIDTH
    row = seeded_study.run_arm("wider_fewer_epochs", 0, quick=True, epochs=1)
    assert base_width == train.WIDTH  # the arm's constants are put back
    assert row["arm"] == "wider_fewer_epochs" and row["epochs"] == 1 and row["best_epoch"] == 1
    assert row["parameters"] > 2 * seeded_study.run_arm("base", 0, quick=True, epochs=1)["parameters"]
    for field in seeded_study.FIELDS:
        if field.endswith("accuracy"):
            assert 0.0 <= row[field] <= 1.0, field
    assert row["training_seconds"] > 0 and row["code_version"]


def test_a_cell_is_mean_and_sample_sd_and_never_minus_zero():
    from results_file import mean_and_sd

    assert mean_and_sd([1.0, 2.0]) == "1.50 ± 0.71"
    assert mean_and_sd([0.7]) == "0.70 ± 0.00"
    assert mean_and_sd([-0.001, 0.0]) == "0.00 ± 0.00"
    assert mean_and_sd([]) == "-"
