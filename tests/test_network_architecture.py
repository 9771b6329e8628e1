"""The two-input / two-output model: names and shapes, its losses, that it learns, the weight average, saving."""

import keras
import numpy as np
import pytest

from data_creation import MnistSumDataset, evaluation_addends
from network_architecture import AdamWWithEMAWarmup, build_model, compile_model, save_model_plot


def weights_of(model):
    """The trainable weights as NumPy arrays (a copy, not the live variables)."""
    return [keras.ops.convert_to_numpy(weight) for weight in model.trainable_weights]


def test_inputs_and_outputs_are_named_and_shaped(untrained_model):
    assert {t.name for t in untrained_model.inputs} == {"image", "addend"}
    shapes = {t.name: tuple(t.shape) for t in untrained_model.inputs}
    assert shapes == {"image": (None, 28, 28, 1), "addend": (None, 10)}
    assert set(untrained_model.output_names) == {"digit", "sum"}
    outputs = untrained_model({"image": np.zeros((3, 28, 28, 1)), "addend": np.eye(10)[:3]})
    assert outputs["digit"].shape == (3, 10) and outputs["sum"].shape == (3, 19)
    np.testing.assert_allclose(keras.ops.sum(outputs["sum"], axis=1), 1.0, rtol=1e-5)


def test_addend_reaches_only_the_sum_head(untrained_model):
    image = np.random.default_rng(1).integers(0, 256, (1, 28, 28, 1)).astype("float32")
    three = untrained_model({"image": image, "addend": np.eye(10)[[3]]})
    five = untrained_model({"image": image, "addend": np.eye(10)[[5]]})
    np.testing.assert_array_equal(three["digit"], five["digit"])
    assert not np.allclose(three["sum"], five["sum"])


def test_width_multiplies_the_image_branch_and_leaves_the_heads():
    wide = build_model(width=1.5)
    assert [wide.get_layer(f"conv{i}_conv").filters for i in range(1, 5)] == [24, 72, 96, 192]
    assert wide.get_layer("features").units == 192
    assert wide.get_layer("sum_hidden").units == build_model().get_layer("sum_hidden").units
    with pytest.raises(ValueError, match="width must be a positive number, got 0"):
        build_model(width=0)


@pytest.mark.parametrize("head", ["outer_product", "number_line", "concat_mlp"])
def test_under_mixed_bfloat16_the_layers_compute_in_bfloat16_and_the_outputs_are_float32(head):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_model(head)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("conv2_conv").compute_dtype == "bfloat16"
    outputs = model({"image": np.zeros((2, 28, 28, 1), "float32"), "addend": np.eye(10)[:2]})
    assert {name: keras.backend.standardize_dtype(output.dtype) for name, output in outputs.items()} == {
        "digit": "float32",
        "sum": "float32",
    }


def test_the_warmed_up_average_starts_as_the_live_weights_and_lengthens_its_memory():
    """After step t (from 0) the average is m * average + (1 - m) * weight with m = min(0.99, (1 + t) / (10 + t))."""
    weight = keras.Variable([1.0])
    optimizer = AdamWWithEMAWarmup(learning_rate=0.1, weight_decay=0.0, use_ema=True, ema_momentum=0.99)
    optimizer.build([weight])
    average = 1.0  # the average starts as the initial weight
    for step in range(40):
        optimizer.apply_gradients([(keras.ops.convert_to_tensor([1.0]), weight)])
        momentum = min(0.99, (1 + step) / (10 + step))
        average = momentum * average + (1 - momentum) * float(weight.numpy()[0])
    optimizer.finalize_variable_values([weight])  # puts the average in the weight
    assert float(weight.numpy()[0]) == pytest.approx(average, rel=1e-5)


def test_label_smoothing_moves_that_share_of_each_target_onto_every_class():
    smoothed = compile_model(build_model(), 1e-3, 1e-4, 0.99, label_smoothing=0.1)
    inputs = {"image": np.zeros((4, 28, 28, 1), "float32"), "addend": np.eye(10)[:4]}
    targets = {"digit": np.eye(10)[[1, 2, 3, 4]], "sum": np.eye(19)[[1, 3, 5, 7]]}
    logs = smoothed.evaluate(inputs, targets, verbose=0, return_dict=True)
    predicted = smoothed.predict(inputs, verbose=0)
    soft = 0.9 * targets["digit"] + 0.1 / 10
    assert logs["digit_loss"] == pytest.approx(-np.mean(np.sum(soft * np.log(predicted["digit"]), axis=1)), rel=1e-4)


def test_each_head_is_scored_by_its_cross_entropy_and_accuracy():
    """The loss is the digit's cross-entropy plus the sum's, each averaged over the batch; accuracy is
    the share of rows whose most probable class is the target."""
    model = compile_model(build_model(), learning_rate=1e-3, weight_decay=1e-4, ema_momentum=0.99)
    rng = np.random.default_rng(0)
    inputs = {
        "image": rng.integers(0, 256, (16, 28, 28, 1)).astype("float32"),
        "addend": np.eye(10)[rng.integers(0, 10, 16)],
    }
    targets = {"digit": np.eye(10)[rng.integers(0, 10, 16)], "sum": np.eye(19)[rng.integers(0, 19, 16)]}
    logs = model.evaluate(inputs, targets, batch_size=16, verbose=0, return_dict=True)
    predicted = model.predict(inputs, verbose=0)
    for head in ("digit", "sum"):
        cross_entropy = -np.mean(np.sum(targets[head] * np.log(predicted[head]), axis=1))
        assert logs[f"{head}_loss"] == pytest.approx(cross_entropy, rel=1e-4)
        hits = predicted[head].argmax(axis=1) == targets[head].argmax(axis=1)
        assert logs[f"{head}_accuracy"] == pytest.approx(hits.mean())
    assert logs["loss"] == pytest.approx(logs["digit_loss"] + logs["sum_loss"], rel=1e-4)


@pytest.mark.slow
def test_the_network_learns_from_real_digits(mnist):
    """Three epochs over 512 MNIST images: both heads' losses fall every epoch and the digit head already
    reads most of its training images (the sum head, which needs the digit first, follows more slowly)."""
    (x_train, y_train), _ = mnist
    keras.utils.set_random_seed(0)
    model = compile_model(build_model(), learning_rate=3e-3, weight_decay=0.0, ema_momentum=0.9)
    history = model.fit(MnistSumDataset(x_train[:512], y_train[:512], 64, seed=0), epochs=3, verbose=0).history
    for head in ("digit", "sum"):
        losses = history[f"{head}_loss"]
        assert losses[0] > losses[1] > losses[2], head
    assert history["digit_accuracy"][-1] > 0.8 and history["sum_accuracy"][-1] > history["sum_accuracy"][0]


@pytest.mark.slow
def test_validation_and_the_final_model_use_the_weight_average(digit_images):
    """After each step the optimizer folds the new weights into its average (new average = momentum x
    average + (1 - momentum) x weights, from the first step's weights on). `SwapEMAWeights` validates
    the average, and fit leaves it in the model: it is what train.py saves."""
    images, digits = digit_images
    momentum = 0.5
    model = compile_model(build_model(), learning_rate=0.01, weight_decay=0.0, ema_momentum=momentum)
    steps = []
    record_each_step = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: steps.append(weights_of(model))
    )
    validation = MnistSumDataset(images, digits, 20, addends=evaluation_addends(20, seed=0, split="validation"))
    history = model.fit(
        MnistSumDataset(images, digits, 5, seed=0),  # four steps
        validation_data=validation,
        callbacks=[record_each_step, keras.callbacks.SwapEMAWeights(swap_on_epoch=True)],
        verbose=0,
    )
    average = steps[0]
    for weights in steps[1:]:
        average = [momentum * mean + (1 - momentum) * new for mean, new in zip(average, weights, strict=True)]
    for kept, expected in zip(weights_of(model), average, strict=True):
        np.testing.assert_allclose(kept, expected, rtol=1e-5, atol=1e-7)
    assert not all(np.allclose(last, mean) for last, mean in zip(steps[-1], average, strict=True))
    validated = model.evaluate(validation, verbose=0, return_dict=True)["loss"]
    assert history.history["val_loss"][0] == pytest.approx(validated, rel=1e-5)


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
    with pytest.warns(UserWarning, match="model plot skipped: You must install graphviz"):
        assert save_model_plot(untrained_model, tmp_path / "plot.png") is False
    assert not (tmp_path / "plot.png").exists()
