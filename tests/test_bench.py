"""bench.py: the original architecture, the FLOP count, and the quick benchmark end to end."""

import json

import keras
import numpy as np
import pytest

import bench


def test_argmax_one_hot_marks_the_most_probable_class():
    probabilities = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], dtype="float32")
    chosen = bench.ArgmaxOneHot()(probabilities)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(chosen), [[0, 1, 0], [1, 0, 0]])


def test_flops_are_counted_from_conv_and_dense_layers():
    image = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3)(image)  # 6x6x4: 2 * 6 * 6 * 3 * 3 * 1 * 4 = 2,592
    x = keras.layers.Flatten()(x)
    output = keras.layers.Dense(5)(x)  # 144 -> 5: 2 * 144 * 5 = 1,440
    assert bench.count_flops(keras.Model(image, output)) == 2_592 + 1_440


def test_original_model_has_its_parameters_its_one_hot_path_and_loads_safely(tmp_path):
    model = bench.build_original_model()
    assert model.count_params() == 347_277
    assert {tensor.name for tensor in model.inputs} == {"image", "addend"}
    assert set(model.output_names) == {"digit", "sum"}
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)

    chosen = model.get_layer("digit_one_hot")
    assert isinstance(chosen, bench.ArgmaxOneHot)
    assert chosen.input is model.get_layer("digit").output
    assert any(tensor is chosen.output for tensor in model.get_layer("digit_and_addend").input)

    path = tmp_path / "original.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.get_layer("digit_one_hot"), bench.ArgmaxOneHot)
    image = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype("float32")
    inputs = {"image": image, "addend": np.eye(10, dtype="float32")[[1, 3, 5, 7]]}
    for name in ("digit", "sum"):
        np.testing.assert_allclose(loaded(inputs)[name], model(inputs)[name], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def quick_reports(mnist, tmp_path_factory):
    """Run `bench.py --quick` for one epoch into a temporary folder; return (report.json, report.md)."""
    output_dir = tmp_path_factory.mktemp("bench")
    assert bench.main(["--quick", "--max-epochs", "1", "--output-dir", str(output_dir)]) == 0
    report = json.loads((output_dir / bench.REPORT_JSON).read_text())
    return report, (output_dir / bench.REPORT_MD).read_text()


@pytest.mark.slow
def test_quick_benchmark_reports_both_models_with_sane_numbers(quick_reports):
    report, markdown = quick_reports
    assert report["settings"]["quick"] and report["settings"]["train_images"] == bench.QUICK["train_images"]
    assert report["machine"]["cpu"] and report["machine"]["usable_cores"] >= 1
    models = report["models"]
    assert set(models) == {"project", "original"}
    assert models["original"]["parameters"] == 347_277
    assert models["project"]["description"].startswith("This project's network") and all(
        "Returns" not in model["description"] for model in models.values()
    )
    for model in models.values():
        assert model["flops_per_image"] > 0 and model["parameters"] > 0
        for accuracy in ("test_digit_accuracy", "test_sum_accuracy", "final_val_digit_accuracy"):
            assert 0 <= model[accuracy] <= 1
        for speed in ("training_images_per_second", "inference_images_per_second", "first_epoch_seconds"):
            assert model[speed] > 0
        assert 0 < model["latency_median_ms"] <= model["latency_p95_ms"]
        assert model["peak_rss_mib"] > 100  # Python and TensorFlow alone take more
        assert model["epochs_run"] == 1
        for threshold in bench.THRESHOLDS:
            seconds = model[bench.threshold_key(threshold)]
            assert seconds is None or seconds > 0

    ratios = report["ratios"]
    assert set(ratios) == {metric.key for metric in bench.METRICS}
    assert ratios["parameters"] == pytest.approx(models["project"]["parameters"] / 347_277)
    assert ratios["training_images_per_second"] > 0 and ratios["test_digit_accuracy"] is not None
    assert "Project / original" in markdown and "347,277" in markdown and "Quick mode" in markdown
