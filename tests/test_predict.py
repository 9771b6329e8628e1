"""predict.py on the command line, and the trained model on the outside images in sample_images/."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from predict import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "sample_images").iterdir())
RED_THREE, PLAIN_SEVEN = str(ROOT / "sample_images/3_pen_red.jpg"), str(ROOT / "sample_images/7_pen_plain.jpg")
# With the committed model every sample but the printed 1 (read as a 7) came out right: 32 of 33.
SAMPLE_ACCURACY_FLOOR = 0.85


@pytest.fixture(scope="session")
def model_file(tmp_path_factory, untrained_model):
    """The untrained network as a .keras file: predict.py's plumbing does not need a good model."""
    path = tmp_path_factory.mktemp("model") / "untrained.keras"
    untrained_model.save(path)
    return str(path)


def run_script(*args):
    """Run predict.py as a command; returns the finished process, output captured."""
    return subprocess.run([sys.executable, "predict.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("predict.py: error:")]


# --------------------------------------------------------------------------- output


ROW_ORDER = (
    "file",
    "digit",
    "digit_probability",
    "looks_like_a_digit",
    "addend",
    "sum",
    "sum_probability",
)  # of a JSON row


def predicted_rows(model_file, files, addends):
    """What the network answers for `files` with `addends`, computed here without predict.py."""
    from evaluate_func import DIGIT_CONFIDENCE_FLOOR, load_saved_model, predict_digit_and_sum
    from image_preprocessing import preprocess_image

    images = np.stack([preprocess_image(file) for file in files])
    predicted = predict_digit_and_sum(load_saved_model(model_file), images, addends)
    answers = zip(files, predicted["digit_probability"], addends, predicted["sum_probability"], strict=True)
    return [
        (
            file,
            p_digit.argmax(),
            p_digit.max(),
            p_digit.max() >= DIGIT_CONFIDENCE_FLOOR,
            addend,
            p_sum.argmax(),
            p_sum.max(),
        )
        for file, p_digit, addend, p_sum in answers
    ]


@pytest.mark.slow
def test_the_command_as_readme_writes_it_prints_the_answer_and_nothing_on_stderr(model_file):
    """TensorFlow's C++ start-up notices (absl, oneDNN, cuInit) stay off the terminal, with no setting made."""
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "predict.py", PLAIN_SEVEN, "--addend", "4", "--model", model_file],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.splitlines()[0].split() == ["file", "digit", "p(digit)", "digit?", "addend", "sum", "p(sum)"]


def test_json_output_is_the_networks_answer_for_each_image(model_file, capsys):
    assert main([RED_THREE, PLAIN_SEVEN, "--addend", "4", "--model", model_file, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    expected = predicted_rows(model_file, [RED_THREE, PLAIN_SEVEN], [4, 4])
    assert len(rows) == len(expected) and all(set(row) == set(ROW_ORDER) for row in rows)
    for row, answer in zip(rows, expected, strict=True):
        assert tuple(row[key] for key in ROW_ORDER) == pytest.approx(answer, abs=1e-6)


def test_table_rows_answer_each_image_with_its_own_random_addend(model_file, capsys):
    files = [RED_THREE, PLAIN_SEVEN] * 6
    assert main([*files, "--model", model_file]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["file", "digit", "p(digit)", "digit?", "addend", "sum", "p(sum)"]
    assert len(lines) == 13 and len({len(line) for line in lines}) == 1  # one row per image, aligned
    table = [line.split() for line in lines[1:]]
    addends = [int(row[4]) for row in table]
    assert len(set(addends)) > 1  # drawn per image: twelve equal draws would be a one-in-10^11 chance
    for row, answer in zip(table, predicted_rows(model_file, files, addends), strict=True):
        file, digit, digit_probability, looks, addend, total, sum_probability = row
        assert (file, int(digit), looks == "yes", int(addend), int(total)) == (*answer[:2], *answer[3:6])
        assert float(digit_probability) == pytest.approx(answer[2], abs=5e-4)  # printed with 3 decimals
        assert float(sum_probability) == pytest.approx(answer[6], abs=5e-4)


def test_show_saves_a_figure_and_says_where(model_file, tmp_path, capsys):
    figure = tmp_path / "figure.png"
    assert main([RED_THREE, "--addend", "1", "--model", model_file, "--show", "--figure", str(figure)]) == 0
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert capsys.readouterr().out.splitlines()[-1] == f"figure saved to {figure}"


def test_json_stays_valid_json_with_show(model_file, tmp_path, capsys):
    """The note about the figure goes to stderr, so `predict.py ... --json --show > out.json` is JSON."""
    figure = tmp_path / "figure.png"
    assert main([RED_THREE, "--addend", "1", "--model", model_file, "--json", "--show", "--figure", str(figure)]) == 0
    captured = capsys.readouterr()
    assert [row["file"] for row in json.loads(captured.out)] == [RED_THREE]
    assert captured.err.strip() == f"figure saved to {figure}"
    assert figure.read_bytes().startswith(b"\x89PNG")


# --------------------------------------------------------------------------- bad input


def test_bad_images_are_reported_and_the_good_ones_answered(model_file, tmp_path, capsys):
    text, blank = tmp_path / "notes.png", tmp_path / "blank.png"
    text.write_text("not an image")
    Image.new("L", (64, 64), 255).save(blank)
    images = [RED_THREE, str(tmp_path / "missing.png"), str(text), str(blank), str(tmp_path), PLAIN_SEVEN]
    assert main([*images, "--addend", "2", "--model", model_file, "--json"]) == 2
    captured = capsys.readouterr()
    assert [row["file"] for row in json.loads(captured.out)] == [RED_THREE, PLAIN_SEVEN]
    errors = error_lines(captured.err)
    assert len(errors) == 4
    for error, name in zip(errors, ["missing.png", "notes.png", "blank.png", tmp_path.name], strict=True):
        assert name in error


def test_when_every_image_is_bad_there_is_one_error_each_and_no_table(model_file, tmp_path, capsys):
    text, blank = tmp_path / "notes.png", tmp_path / "blank.png"
    text.write_text("not an image")
    Image.new("L", (64, 64), 255).save(blank)
    figure = tmp_path / "figure.png"
    images = [str(tmp_path / "missing.png"), str(text), str(blank)]
    assert main([*images, "--model", model_file, "--show", "--figure", str(figure)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    errors = error_lines(captured.err)
    assert len(errors) == len(captured.err.splitlines()) == 3
    for error, name in zip(errors, ["missing.png", "notes.png", "blank.png"], strict=True):
        assert name in error
    assert not figure.exists()
    assert main([*images, "--model", model_file, "--json"]) == 2
    assert json.loads(capsys.readouterr().out) == []  # --json still prints JSON: an empty list


@pytest.mark.parametrize("value", ["12", "-1", "3.5", "seven"])
def test_a_bad_addend(value, capsys):
    assert main([RED_THREE, "--addend", value]) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert "--addend" in error and value in error


def test_a_missing_or_broken_model(tmp_path, capsys):
    broken = tmp_path / "model.zip"
    broken.write_text("not a model")
    for model in [str(tmp_path / "absent.zip"), str(broken), str(tmp_path)]:
        assert main([RED_THREE, "--model", model]) == 2
        (error,) = error_lines(capsys.readouterr().err)
        assert model in error


def test_the_command_fails_in_one_line_without_a_traceback(model_file):
    usage = run_script(RED_THREE, "--addend", "10")
    assert usage.returncode == 2 and usage.stdout == ""
    assert len(usage.stderr.splitlines()) == len(error_lines(usage.stderr)) == 1

    mixed = run_script(RED_THREE, "no_such_image.png", "--addend", "5", "--model", model_file)
    assert mixed.returncode == 2
    assert "Traceback" not in mixed.stderr
    assert error_lines(mixed.stderr) == ["predict.py: error: image file 'no_such_image.png' does not exist"]
    assert "3_pen_red.jpg" in mixed.stdout


def test_a_mistyped_command_is_answered_without_waiting_for_tensorflow(tmp_path):
    """Loading TensorFlow takes seconds; predict.py checks its arguments first, so --help and a typo are
    answered at once. Here a stand-in `tensorflow` module that refuses to load proves it is never imported."""
    (tmp_path / "tensorflow.py").write_text("raise ImportError('TensorFlow was imported')\n")
    environment = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def run(*args):
        command = [sys.executable, "predict.py", *args]
        return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)

    usage = run("--help")
    assert usage.returncode == 0 and usage.stdout.startswith("usage: predict.py")
    typo = run(RED_THREE, "--addend", "x")
    assert typo.returncode == 2 and error_lines(typo.stderr) == [
        "predict.py: error: argument --addend: invalid int value: 'x' (see predict.py --help)"
    ]
    assert "TensorFlow was imported" in run(RED_THREE, "--addend", "1").stderr  # a real run does need it


# --------------------------------------------------------------------------- sample images


def test_the_sample_images_cover_every_digit():
    assert len(SAMPLES) >= 15
    assert {int(path.name[0]) for path in SAMPLES} == set(range(10))
    assert sum(path.stat().st_size for path in SAMPLES) < 2 * 2**20


def test_the_trained_model_reads_the_sample_images(trained_model):
    from evaluate_func import predict_digit_and_sum
    from image_preprocessing import preprocess_image

    digits = np.array([int(path.name[0]) for path in SAMPLES])
    addends = np.arange(len(SAMPLES)) % 10
    predicted = predict_digit_and_sum(trained_model, np.stack([preprocess_image(p) for p in SAMPLES]), addends)
    wrong = [
        f"{path.name} read as {digit}"
        for path, digit, true in zip(SAMPLES, predicted["digit"], digits, strict=True)
        if digit != true
    ]
    assert np.mean(predicted["digit"] == digits) >= SAMPLE_ACCURACY_FLOOR, wrong
    assert np.mean(predicted["sum"] == digits + addends) >= SAMPLE_ACCURACY_FLOOR, wrong
