"""The plot helpers: what each figure shows, saving, bad input, and a quiet import."""

import importlib

import keras
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

import helper_mnist
from data_creation import MnistSumDataset

HISTORY_COLUMNS = [
    "epoch",
    "digit_accuracy",
    "digit_loss",
    "loss",
    "sum_accuracy",
    "sum_loss",
    "val_digit_accuracy",
    "val_digit_loss",
    "val_loss",
    "val_sum_accuracy",
    "val_sum_loss",
]


@pytest.fixture(autouse=True)
def headless_figures(monkeypatch):
    """Draw off screen and close every figure a test made."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    plt.switch_backend("Agg")
    yield
    plt.close("all")


def is_png(path):
    return path.stat().st_size > 0 and path.read_bytes().startswith(b"\x89PNG")


def titles(fig):
    return [ax.get_title() for ax in fig.axes]


def test_import_prints_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    importlib.reload(helper_mnist)
    assert capsys.readouterr() == ("", "")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- data


def test_class_frequencies_are_each_splits_shares_side_by_side(tmp_path):
    train, test = np.repeat(np.arange(10), 60), np.repeat([0, 1], [2, 8])  # balanced; 20% zeros, 80% ones
    fig = helper_mnist.plot_class_frequencies({"train": train, "test": test}, path=tmp_path / "f.png")
    ax = fig.axes[0]
    train_bars, test_bars = ax.containers
    assert [bar.get_height() for bar in train_bars] == [10.0] * 10
    assert [bar.get_height() for bar in test_bars] == [20.0, 80.0] + [0.0] * 8
    centres = [[bar.get_x() + bar.get_width() / 2 for bar in bars] for bars in (train_bars, test_bars)]
    np.testing.assert_allclose(centres, [np.arange(10) - 0.2, np.arange(10) + 0.2])  # each digit's pair of bars
    (balanced,) = ax.get_lines()
    assert balanced.get_ydata()[0] == 10 and "%" in ax.get_ylabel()
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["balanced (10%)", "train (600)", "test (10)"]
    assert is_png(tmp_path / "f.png")


def test_class_frequencies_of_one_array_has_no_legend():
    fig = helper_mnist.plot_class_frequencies([3, 3, 7, 7], title="three")
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and ax.get_title() == "three" and ax.get_legend() is None
    assert [bar.get_height() for bar in ax.containers[0]] == [0, 0, 0, 50, 0, 0, 0, 50, 0, 0]
    assert [bar.get_x() + bar.get_width() / 2 for bar in ax.containers[0]] == list(range(10))


@pytest.mark.parametrize(
    "bad, message",
    [
        ([], "labels is empty"),
        ({}, "labels is an empty dict"),
        ({"train": [1, 10]}, r"labels\['train'\] must lie in 0-9"),
        ([[1, 2]], "labels must be a scalar or 1-D"),
    ],
)
def test_class_frequencies_rejects_bad_labels(bad, message):
    with pytest.raises(ValueError, match=message):
        helper_mnist.plot_class_frequencies(bad)


def test_sample_grid_titles_are_the_sampled_labels_and_repeat_with_the_seed(digit_images, tmp_path):
    images, labels = digit_images
    fig = helper_mnist.plot_sample_grid(images, labels, rows=2, cols=3, seed=1, path=tmp_path / "g.png")
    assert len(fig.axes) == 6
    picked = np.random.default_rng(1).choice(len(images), 6, replace=False)
    assert titles(fig) == [str(label) for label in labels[picked]]
    assert titles(helper_mnist.plot_sample_grid(images, labels, rows=2, cols=3, seed=1)) == titles(fig)
    assert is_png(tmp_path / "g.png")


def test_sample_grid_shows_at_most_every_image_once(digit_images):
    images, labels = digit_images
    fig = helper_mnist.plot_sample_grid(images, labels, rows=4, cols=8)
    assert sorted(map(int, titles(fig))) == sorted(labels.tolist())


@pytest.mark.parametrize(
    "images, labels, message",
    [(np.zeros((3, 28, 28)), [1, 2], "labels has 2 values for 3 images"), (np.zeros((0, 28, 28)), [], "is empty")],
)
def test_sample_grid_rejects_mismatched_or_empty_input(images, labels, message):
    with pytest.raises(ValueError, match=message):
        helper_mnist.plot_sample_grid(images, labels)


def test_normalisation_shows_one_histogram_on_two_scales(digit_images, tmp_path):
    images, _ = digit_images
    fig = helper_mnist.plot_normalisation(images, path=tmp_path / "n.png")
    assert len(fig.axes) == 6  # two histograms, two images, two colour bars
    raw, scaled = (ax.patches[0] for ax in fig.axes[:2])  # the top row, before the images and colour bars
    raw, scaled = raw.get_data(), scaled.get_data()
    assert raw.values.sum() == images.size and np.array_equal(raw.values, scaled.values)
    assert np.allclose(scaled.edges, raw.edges / 255) and raw.edges[-1] > 255
    assert is_png(tmp_path / "n.png")


def test_batch_titles_decode_the_targets_above_raw_and_augmented_rows(digit_images, tmp_path):
    images, digits = digit_images
    data = MnistSumDataset(images, digits, batch_size=8)
    inputs, targets = data[0]
    raw = data.images[data.order[:8]]
    fig = helper_mnist.plot_batch(inputs, targets, raw_images=raw, count=5, path=tmp_path / "b.png")
    assert len(fig.axes) == 10
    shown_digits, addends = digits[data.order[:5]], data.addends[data.order[:5]]
    expected = [f"{d} + {a} = {d + a}" for d, a in zip(shown_digits, addends, strict=True)]
    assert titles(fig) == expected + [""] * 5
    assert [fig.axes[0].get_ylabel(), fig.axes[5].get_ylabel()] == ["raw", "augmented"]
    assert np.array_equal(fig.axes[0].images[0].get_array(), raw[0])
    assert is_png(tmp_path / "b.png")


def test_batch_without_raw_images_is_one_row():
    inputs = {"image": np.zeros((3, 28, 28, 1), np.float32), "addend": np.eye(10)[[1, 2, 3]]}
    targets = {"digit": np.eye(10)[[4, 5, 6]], "sum": np.eye(19)[[5, 7, 9]]}
    fig = helper_mnist.plot_batch(inputs, targets)
    assert titles(fig) == ["4 + 1 = 5", "5 + 2 = 7", "6 + 3 = 9"]
    with pytest.raises(ValueError, match="raw_images"):
        helper_mnist.plot_batch(inputs, targets, raw_images=np.zeros((2, 28, 28)))
    with pytest.raises(ValueError, match="sum"):
        helper_mnist.plot_batch(inputs, {**targets, "sum": targets["sum"][:2]})


# --------------------------------------------------------------------------- training


def history_logs(epochs=3):
    rng = np.random.default_rng(0)
    return {column: rng.random(epochs).tolist() for column in HISTORY_COLUMNS if column != "epoch"}


def assert_curves(fig, logs, first_epoch=1):
    """Both panels draw training and validation of both heads over the epochs, each line from its own column
    (the losses; one minus the accuracies), and mark the epoch of the lowest validation loss, the one train.py
    keeps."""
    loss, error = fig.axes
    assert [loss.get_title(), error.get_title()] == ["loss", "error rate (1 - accuracy)"]
    epochs = len(logs["loss"])
    columns = {"digit training": "digit_{}", "digit validation": "val_digit_{}", "sum training": "sum_{}"}
    columns["sum validation"] = "val_sum_{}"
    for ax, measure in ((loss, "loss"), (error, "accuracy")):
        *curves, best = ax.get_lines()
        assert [line.get_label() for line in curves] == list(columns)
        for line in curves:
            assert line.get_xdata().tolist() == list(range(first_epoch, first_epoch + epochs))
            column = np.array(logs[columns[line.get_label()].format(measure)])
            np.testing.assert_allclose(line.get_ydata(), column if measure == "loss" else 1 - column)
        kept = first_epoch + int(np.argmin(logs["val_loss"]))
        assert best.get_label() == f"lowest validation loss (epoch {kept})" and best.get_xdata()[0] == kept


def test_training_curves_from_a_dict_of_lists():
    logs = history_logs()
    fig = helper_mnist.plot_training_curves(logs)
    assert_curves(fig, logs)
    assert fig.axes[1].get_yscale() == "log" and "error rate" in fig.axes[1].get_title()


def test_training_curves_from_a_keras_history():
    history = keras.callbacks.History()
    history.history, history.epoch = history_logs(4), [2, 3, 4, 5]  # a run resumed at epoch 2
    assert_curves(helper_mnist.plot_training_curves(history), history.history, first_epoch=3)


def test_training_curves_from_the_csv_log_with_a_learning_rate_column(tmp_path):
    logs = history_logs(5)
    rows = [",".join([*HISTORY_COLUMNS, "learning_rate"])]
    rows += [",".join(map(str, [epoch] + [logs[c][epoch] for c in HISTORY_COLUMNS[1:]] + [1e-3])) for epoch in range(5)]
    (tmp_path / "training_history.log").write_text("\n".join(rows) + "\n")
    fig = helper_mnist.plot_training_curves(tmp_path / "training_history.log", path=tmp_path / "c.png")
    assert_curves(fig, logs)
    assert is_png(tmp_path / "c.png")


def test_training_curves_of_train_py_tell_the_averaged_from_the_live_validation_and_mark_the_kept_epoch():
    logs = history_logs(4)
    logs["val_loss"] = [0.5, 0.2, 0.3, 0.4]
    for head, shift in (("digit", 0.0), ("sum", 0.01)):
        logs[f"val_live_{head}_loss"] = [0.1 + shift, 0.2, 0.3, 0.4]
        logs[f"val_live_{head}_accuracy"] = [0.9 - shift, 0.95, 0.97, 0.98]
    fig = helper_mnist.plot_training_curves(logs)
    columns = {  # label -> the log column it draws, as {} of "loss" or "accuracy"
        "digit training": "digit_{}", "digit validation, averaged weights": "val_digit_{}",
        "digit validation, live weights": "val_live_digit_{}", "sum training": "sum_{}",
        "sum validation, averaged weights": "val_sum_{}", "sum validation, live weights": "val_live_sum_{}",
    }  # fmt: skip
    for ax, measure in zip(fig.axes, ("loss", "accuracy"), strict=True):
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {*columns, "lowest validation loss (epoch 2)"}
        for label, column in columns.items():
            values = np.array(logs[column.format(measure)])
            np.testing.assert_allclose(lines[label].get_ydata(), values if measure == "loss" else 1 - values)
        assert lines["lowest validation loss (epoch 2)"].get_xdata()[0] == 2


def test_training_curves_name_the_kept_epoch_as_a_whole_number_when_the_log_reads_epochs_as_floats():
    logs = {**history_logs(3), "epoch": [0.0, 1.0, 2.0], "val_loss": [0.5, 0.2, 0.3]}  # as train.read_log gives them
    fig = helper_mnist.plot_training_curves(logs)
    assert fig.axes[0].get_lines()[-1].get_label() == "lowest validation loss (epoch 2)"


def test_training_curves_without_validation_draw_training_only():
    logs = {key: values for key, values in history_logs().items() if not key.startswith("val_")}
    fig = helper_mnist.plot_training_curves(logs)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["digit training", "sum training"]


@pytest.mark.parametrize(
    "logs, message",
    [({"digit_loss": [1.0]}, "lacks"), ({**history_logs(), "sum_loss": [1.0]}, "one value per epoch")],
)
def test_training_curves_reject_incomplete_logs(logs, message):
    with pytest.raises(ValueError, match=message):
        helper_mnist.plot_training_curves(logs)


def test_training_curves_reject_an_empty_csv_log(tmp_path):
    (tmp_path / "empty.log").write_text(",".join(HISTORY_COLUMNS) + "\n")
    with pytest.raises(ValueError, match="lacks"):
        helper_mnist.plot_training_curves(tmp_path / "empty.log")


# --------------------------------------------------------------------------- evaluation


def written_numbers(ax):
    return sorted(float(text.get_text()) for text in ax.texts)


@pytest.mark.parametrize("size", [10, 19])
def test_confusion_matrix_writes_every_nonzero_count(size, tmp_path):
    rng = np.random.default_rng(size)
    errors = (rng.random((size, size)) < 0.1) * rng.integers(1, 9, (size, size))
    matrix = np.diag(rng.integers(500, 1000, size)) + errors
    fig = helper_mnist.plot_confusion_matrix(matrix, title="sums", path=tmp_path / "m.png")
    ax = fig.axes[0]
    assert ax.get_title() == "sums" and len(fig.axes) == 2  # the matrix and its colour bar
    assert written_numbers(ax) == sorted(matrix[matrix > 0].astype(float).tolist())
    for text in ax.texts:  # each count in its cell: row = true class, column = predicted
        column, row = text.get_position()
        assert float(text.get_text()) == matrix[round(row), round(column)]
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), matrix)
    assert [label.get_text() for label in ax.get_xticklabels()] == [str(i) for i in range(size)]
    assert is_png(tmp_path / "m.png")


def test_confusion_matrix_takes_custom_labels():
    ax = helper_mnist.plot_confusion_matrix([[5, 1], [0, 3]], labels=["odd", "even"]).axes[0]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["odd", "even"]
    assert written_numbers(ax) == [1, 3, 5]


@pytest.mark.parametrize(
    "matrix, labels, message",
    [
        (np.ones((2, 3)), None, r"square and non-empty, got shape \(2, 3\)"),
        (np.zeros((3, 3)), None, "not all zero"),
        (-np.eye(3), None, "non-negative counts"),
        (np.eye(3), "ab", "2 labels for a 3x3 matrix"),
    ],
)
def test_confusion_matrix_rejects_bad_input(matrix, labels, message):
    with pytest.raises(ValueError, match=message):
        helper_mnist.plot_confusion_matrix(matrix, labels=labels)


def test_misclassified_marks_the_wrong_digit_and_sum_in_red(digit_images, tmp_path):
    images, _ = digit_images
    true_digits, predicted_digits, addends = [1, 2, 3], [1, 5, 3], [4, 4, 4]
    true_sums, predicted_sums = [5, 6, 7], [5, 9, 8]
    fig = helper_mnist.plot_misclassified(
        images[:3], true_digits, predicted_digits, addends, true_sums, predicted_sums, path=tmp_path / "w.png"
    )
    assert titles(fig) == ["digit 1, pred 1", "digit 2, pred 5", "digit 3, pred 3"]
    assert [ax.get_xlabel() for ax in fig.axes] == ["1+4=5, pred 5", "2+4=6, pred 9", "3+4=7, pred 8"]
    assert [ax.title.get_color() for ax in fig.axes] == ["black", "red", "black"]
    assert [ax.xaxis.label.get_color() for ax in fig.axes] == ["black", "red", "red"]
    assert is_png(tmp_path / "w.png")


def test_misclassified_shows_at_most_max_images(digit_images):
    images, digits = digit_images
    fig = helper_mnist.plot_misclassified(images, digits, digits, digits, digits, digits, max_images=11)
    assert len(fig.axes) == 11 and "11 of 20" in fig.get_suptitle()
    with pytest.raises(ValueError, match="predicted_sums has 19 values for 20 images"):
        helper_mnist.plot_misclassified(images, digits, digits, digits, digits, digits[:19])


def test_addition_table_boxes_the_wrong_sums_in_red(tmp_path):
    table = np.add.outer(range(10), range(10))
    table[3, 4] = 8
    fig = helper_mnist.plot_addition_table(table, path=tmp_path / "t.png")
    ax = fig.axes[0]
    assert ax.get_title() == "Predicted sums: 1 of 100 wrong"
    boxed = [text for text in ax.texts if text.get_bbox_patch() is not None]
    assert [(text.get_text(), text.get_position()) for text in boxed] == [("8", (4, 3))]
    assert len(ax.texts) == 100
    assert is_png(tmp_path / "t.png")


@pytest.mark.parametrize(
    "table, message",
    [(np.zeros((9, 10)), r"10x10 \(digit x addend\), got shape \(9, 10\)"), (np.full((10, 10), 19), "0-18")],
)
def test_addition_table_rejects_bad_tables(table, message):
    with pytest.raises(ValueError, match=message):
        helper_mnist.plot_addition_table(table)


def test_addend_values_show_each_probability_in_percent_in_its_cell(tmp_path):
    values = np.eye(10)
    values[7] = 0.0
    values[7, [7, 2]] = 0.75, 0.25  # addend 7 read as 7 three times in four, as 2 once
    fig = helper_mnist.plot_addend_values(values, path=tmp_path / "v.png")
    ax = fig.axes[0]
    cells = {(text.get_position(), text.get_text()) for text in ax.texts}
    assert len(ax.texts) == 11 and ((2, 7), "25") in cells and ((7, 7), "75") in cells and ((3, 3), "100") in cells
    np.testing.assert_array_equal(ax.images[0].get_array(), np.rint(100 * values))
    assert ax.get_ylabel().startswith("addend") and is_png(tmp_path / "v.png")


@pytest.mark.parametrize(
    "values, message",
    [(np.eye(9), r"10x10 matrix of probabilities, got shape \(9, 9\)"), (np.eye(10) * 2, "must sum to 1"),
     (np.full((10, 10), np.nan), "10x10 matrix of probabilities")],
)  # fmt: skip
def test_addend_values_reject_what_is_no_table_of_probabilities(values, message):
    with pytest.raises(ValueError, match=message):
        helper_mnist.plot_addend_values(values)


# --------------------------------------------------------------------------- outside images


def outside_prediction(digit, addend, digit_probability=0.9, sum_probability=0.8, total=None):
    return {
        "digit": digit,
        "digit_probability": digit_probability,
        "addend": addend,
        "sum": digit + addend if total is None else total,
        "sum_probability": sum_probability,
    }


def outside_cells(fig):
    """Each image's title, name and title colour, and its two panels, from the figure's cells (subfigures)."""
    cells = [cell for cell in fig.subfigs if cell.axes]
    title_colours = [next(t.get_color() for t in cell.texts if t.get_text() == cell.get_suptitle()) for cell in cells]
    return [cell.get_suptitle() for cell in cells], [cell.get_supxlabel() for cell in cells], title_colours, cells


def test_outside_images_show_each_original_in_grey_left_of_its_input_under_the_truth(digit_images, tmp_path):
    images, _ = digit_images
    colour = np.zeros((60, 90, 3), np.uint8)
    colour[..., 0], colour[..., 2] = 90, 30  # a dark red: grey 40
    originals = [colour, Image.fromarray(255 - images[1])]
    predictions = [outside_prediction(7, 3, 0.998, 0.9951), outside_prediction(2, 9, 0.6, 0.51)]
    fig = helper_mnist.plot_outside_images(
        originals, images[:2], predictions, names=["seven.png", "two.jpg"], true_digits=[7, 3], path=tmp_path / "o.png"
    )
    titles, names, colours, cells = outside_cells(fig)
    assert titles == ["true 7 → 7\n7 + 3 = 10", "true 3 → 2 (60%)\n2 + 9 = 11 (51%)"]  # probabilities under 99.5%
    assert names == ["seven.png", "two.jpg"] and colours == ["black", "red"]  # the 3 read as 2 is wrong
    for cell, original, image in zip(cells, [np.full((60, 90), 40.0), 255 - images[1]], images[:2], strict=True):
        left, right = cell.axes
        assert left.get_position().x1 < right.get_position().x0  # side by side, the original first
        np.testing.assert_array_equal(left.images[0].get_array(), original)
        np.testing.assert_array_equal(right.images[0].get_array(), image)
        assert left.images[0].get_cmap().name == "gray" and left.images[0].get_clim() == (0, 255)
        assert right.images[0].get_interpolation() == "nearest"  # the 28x28 pixels as squares
    assert is_png(tmp_path / "o.png")


def test_outside_images_mark_a_wrong_sum_and_round_probabilities_at_99_5_percent(digit_images):
    images, _ = digit_images
    predictions = [outside_prediction(4, 1, 0.994, 0.5, total=6), outside_prediction(5, 0, 0.995, 0.995)]
    titles, _, colours, _ = outside_cells(helper_mnist.plot_outside_images(images[:2], images[:2], predictions))
    assert titles == ["digit 4 (99%)\n4 + 1 = 6 (50%)", "digit 5\n5 + 0 = 5"]  # no truth given: the digit read
    assert colours == ["black", "black"]
    wrong_sum = helper_mnist.plot_outside_images(images[:1], images[:1], predictions[:1], true_digits=[4])
    assert outside_cells(wrong_sum)[2] == ["red"]  # right digit, 4 + 1 read as 6


def test_outside_images_fill_rows_of_cols_images(digit_images):
    images, digits = digit_images
    predictions = [outside_prediction(int(digit), 0) for digit in digits[:7]]
    fig = helper_mnist.plot_outside_images(images[:7], images[:7], predictions, true_digits=digits[:7], cols=3)
    assert len(fig.subfigs) == 9 and len(fig.axes) == 14  # 3 rows of 3 cells, 7 of them with their two panels
    titles, names, _, _ = outside_cells(fig)
    assert names == [f"image {i}" for i in range(1, 8)] and titles[6] == "true 6 → 6 (90%)\n6 + 0 = 6 (80%)"


def test_outside_images_reject_mismatched_or_incomplete_predictions(digit_images):
    images, _ = digit_images
    with pytest.raises(ValueError, match="expected one of each"):
        helper_mnist.plot_outside_images(images[:2], images[:2], [outside_prediction(1, 1)])
    incomplete = {key: value for key, value in outside_prediction(1, 1).items() if key != "sum_probability"}
    with pytest.raises(ValueError, match="sum_probability"):
        helper_mnist.plot_outside_images(images[:1], images[:1], [incomplete], names=["one"])
