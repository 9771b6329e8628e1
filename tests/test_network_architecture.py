"""The two-input / two-output model: names, shapes, saving and safe loading."""

import keras
import numpy as np
import pytest

from network_architecture import build_model, compile_model, save_model_plot


def test_inputs_and_outputs_are_named_and_shaped(untrained_model):
    assert {t.name for t in untrained_model.inputs} == {"image", "addend"}
    shapes = {t.name: tuple(t.shape) for t in untrained_model.inputs}
    assert shapes == {"image": (None, 28, 28, 1), "addend": (None, 10)}
    assert set(untrained_model.output_names) == {"digit", "sum"}
    outputs = untrained_model({"image": np.zeros((3, 28, 28, 1)), "addend": np.eye(10)[:3]})
    assert outputs["digit"].shape == (3, 10) and outputs["sum"].shape == (3, 19)
    np.testing.assert_allclose(keras.ops.sum(outputs["sum"], axis=1), 1.0, rtol=1e-5)


def test_model_scales_pixels_itself(untrained_model):
    layer_types = [type(layer).__name__ for layer in untrained_model.layers]
    assert "Rescaling" in layer_types and "Lambda" not in layer_types
    assert untrained_model.get_layer("scale_pixels").scale == pytest.approx(1 / 255)


def test_addend_reaches_only_the_sum_head(untrained_model):
    image = np.random.default_rng(1).integers(0, 256, (1, 28, 28, 1)).astype("float32")
    three = untrained_model({"image": image, "addend": np.eye(10)[[3]]})
    five = untrained_model({"image": image, "addend": np.eye(10)[[5]]})
    np.testing.assert_array_equal(three["digit"], five["digit"])
    assert not np.allclose(three["sum"], five["sum"])


def test_compiled_with_crossentropy_and_accuracy_per_head():
    model = compile_model(build_model(), learning_rate=1e-3, weight_decay=1e-4, ema_momentum=0.99)
    assert model.loss == {"digit": "categorical_crossentropy", "sum": "categorical_crossentropy"}
    batch = {"image": np.zeros((4, 28, 28, 1)), "addend": np.eye(10)[:4]}
    targets = {"digit": np.eye(10)[:4], "sum": np.eye(19)[:4]}
    logs = model.evaluate(batch, targets, verbose=0, return_dict=True)
    assert {"digit_accuracy", "sum_accuracy", "digit_loss", "sum_loss"} <= set(logs)


def test_optimizer_keeps_an_average_of_the_weights():
    optimizer = compile_model(build_model(), learning_rate=1e-3, weight_decay=1e-4, ema_momentum=0.99).optimizer
    assert optimizer.use_ema and optimizer.ema_momentum == 0.99
    assert isinstance(optimizer, keras.optimizers.AdamW)


def test_save_and_safe_load_give_identical_predictions(untrained_model, tmp_path):
    path = tmp_path / "model.keras"
    untrained_model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    rng = np.random.default_rng(0)
    inputs = {
        "image": rng.integers(0, 256, (5, 28, 28, 1)).astype("float32"),
        "addend": np.eye(10)[rng.integers(0, 10, 5)],
    }
    before, after = untrained_model.predict(inputs, verbose=0), loaded.predict(inputs, verbose=0)
    for name in ("digit", "sum"):
        np.testing.assert_array_equal(before[name], after[name])


def test_model_plot_is_written(untrained_model, tmp_path):
    path = tmp_path / "plot.png"
    if not save_model_plot(untrained_model, path):
        pytest.skip("graphviz is not installed (the CI installs it)")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_plot_without_graphviz_warns_instead_of_failing(untrained_model, tmp_path, monkeypatch):
    def missing_graphviz(*args, **kwargs):
        raise ImportError("You must install graphviz")

    monkeypatch.setattr(keras.utils, "plot_model", missing_graphviz)
    with pytest.warns(UserWarning, match="model plot skipped"):
        assert save_model_plot(untrained_model, tmp_path / "plot.png") is False
