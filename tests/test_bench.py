"""bench.py: the original architecture, the FLOP count, and the quick benchmark end to end."""

import json
import types

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
    chosen = model.get_layer("digit_one_hot")  # the sum head sees the chosen digit only
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


class FakeClock:
    """time.perf_counter, set by hand: `now` is what the next call returns."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(bench.time, "perf_counter", fake)
    return fake


def test_clock_times_the_first_crossing_of_each_threshold_and_each_epochs_steps(clock):
    """Epoch e runs from 10e s: its steps end at 10e + 8 s, its validation at 10e + 9 s."""
    training = bench.TrainingClock(cap_seconds=3600)
    model = types.SimpleNamespace(stop_training=False)
    training.set_model(model)
    training.on_train_begin()
    for epoch, accuracy in enumerate([0.990, 0.995, 0.993, 0.997, 0.998]):
        clock.now = 10 * epoch
        training.on_epoch_begin(epoch)
        clock.now += 8
        training.on_train_batch_end(0)
        clock.now += 1
        training.on_epoch_end(epoch, {"val_digit_accuracy": accuracy})
    assert training.reached == {0.994: 19, 0.996: 39}  # 99.4% first in epoch 1 (again in 3 and 4), 99.6% in 3
    assert [epoch["training_seconds"] for epoch in training.epochs] == [8] * 5
    assert [epoch["val_digit_accuracy"] for epoch in training.epochs] == [0.990, 0.995, 0.993, 0.997, 0.998]
    assert not model.stop_training and not training.capped


def test_clock_stops_training_at_the_first_step_past_the_cap(clock):
    training = bench.TrainingClock(cap_seconds=30)
    model = types.SimpleNamespace(stop_training=False)
    training.set_model(model)
    training.on_train_begin()
    training.on_epoch_begin(0)
    clock.now = 29.9
    training.on_train_batch_end(0)
    assert not model.stop_training and not training.capped
    clock.now = 30
    training.on_train_batch_end(1)
    assert model.stop_training and training.capped


def test_latency_is_the_median_and_95th_percentile_of_the_timed_calls(clock):
    """20 untimed calls of 1 s, then calls of 1, 2, ..., 100 ms."""
    durations = iter([1.0] * 20 + [milliseconds / 1000 for milliseconds in range(1, 101)])

    def call():
        clock.now += next(durations)

    median, p95 = bench.milliseconds_per_call(call, 100)
    assert median == pytest.approx(50.5) and p95 == pytest.approx(95.05)
    with pytest.raises(StopIteration):  # exactly 120 calls were made
        call()


@pytest.fixture(scope="module")
def quick_reports(mnist, tmp_path_factory):
    """Run `bench.py --quick` into a temporary folder; return (report.json, report.md). The cap is one no loaded
    machine reaches in two quick epochs: the epochs, not the clock, end each run."""
    output_dir = tmp_path_factory.mktemp("bench")
    assert bench.main(["--quick", "--cap-seconds", "3600", "--output-dir", str(output_dir)]) == 0
    report = json.loads((output_dir / bench.REPORT_JSON).read_text())
    return report, (output_dir / bench.REPORT_MD).read_text()


@pytest.mark.slow
def test_quick_benchmark_trains_and_measures_both_models(quick_reports):
    report, markdown = quick_reports
    models = report["models"]
    assert set(models) == {"project", "original"}
    assert models["original"]["parameters"] == 347_277 and models["project"]["parameters"] < 347_277
    # Both learned on the quick subset: far above chance (10% digits; at most 10% for one sum class).
    assert models["project"]["test_digit_accuracy"] >= 0.85 and models["project"]["test_sum_accuracy"] >= 0.5
    assert models["original"]["test_digit_accuracy"] >= 0.75 and models["original"]["test_sum_accuracy"] >= 0.15
    for model in models.values():
        assert model["epochs_run"] == bench.QUICK["max_epochs"] and model["stopped_by"] == "max epochs"
    ratio = report["ratios"]["flops_per_image"]
    assert ratio == pytest.approx(models["project"]["flops_per_image"] / models["original"]["flops_per_image"])
    assert "| Parameters | 184,365 | 347,277 | 0.53 | lower |" in markdown and "Quick mode" in markdown


def made_up_report(quick=False):
    """A report as bench.main writes it, with round numbers; the original never reaches 99.6%."""
    model = {
        "description": "a model",
        "epochs_run": 18,
        "stopped_by": "max epochs",
        "parameters": 200_000,
        "flops_per_image": 6_000_000,
        "training_images_per_second": 4_000.4,
        "seconds_to_99.4%": 150.2,
        "seconds_to_99.6%": 210.7,
        "test_digit_accuracy": 0.9967,
        "test_sum_accuracy": 0.9966,
        "inference_images_per_second": 18_000,
        "latency_median_ms": 0.855,
        "latency_p95_ms": 1.234,
        "peak_memory_mib": 900.4,
    }
    original = model | {"description": "the original", "parameters": 400_000, "seconds_to_99.6%": None}
    ratios = {key: model[key] / original[key] if model[key] and original[key] else None for key, *_ in bench.METRICS}
    machine = dict(cpu="Some CPU", instruction_set="AVX2", cores=2, load_average_at_start=0.5, python="3.11.7")
    machine |= dict(libraries="keras 3", date="2026-12-06")
    settings = dict(quick=quick, max_epochs=18, cap_seconds=720)
    return {
        "machine": machine,
        "settings": settings,
        "models": {"project": model, "original": original},
        "ratios": ratios,
    }


def test_the_markdown_report_lays_the_models_side_by_side():
    lines = bench.markdown_report(made_up_report()).splitlines()
    assert "Machine: Some CPU (AVX2), 2 cores, load 0.5 at the start; Python 3.11.7, keras 3; 2026-12-06." in lines
    assert "- **original** (18 epoch(s), stopped by max epochs): the original" in lines
    assert "| Parameters | 200,000 | 400,000 | 0.50 | lower |" in lines
    assert "| Training images/s (median epoch) | 4,000 | 4,000 | 1.00 | higher |" in lines
    assert "| Seconds until validation digit accuracy >= 99.6% | 211 | not reached | n/a | lower |" in lines
    assert "| Test digit accuracy (last epoch) | 99.67% | 99.67% | 1.00 | higher |" in lines
    assert "| One-image latency, median (ms) | 0.85 | 0.85 | 1.00 | lower |" in lines
    assert "| Peak memory (MiB) | 900 | 900 | 1.00 | lower |" in lines
    assert len([line for line in lines if line.startswith("| ")]) == 1 + len(bench.METRICS)
    assert not any("Quick mode" in line for line in lines)
    assert "Quick mode" in bench.markdown_report(made_up_report(quick=True))


def test_an_unwritable_output_directory_exits_2_before_any_training(tmp_path, capsys):
    blocked = tmp_path / "a file"
    blocked.write_text("not a directory")
    assert bench.main(["--quick", "--output-dir", str(blocked / "reports")]) == 2
    assert capsys.readouterr().err.startswith("bench.py: error: ")


def test_peak_memory_is_this_processs_high_water_mark_in_mib():
    assert 10 < bench.peak_memory_mib() < 100_000
