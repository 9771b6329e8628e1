"""model.zip is untrusted input: hostile archives are refused with a clear message."""

import json
import stat
import zipfile

import keras
import numpy as np
import pytest

import train
from evaluate_func import file_sha256, load_saved_model, read_metadata


@pytest.fixture(scope="module")
def good_archive(tmp_path_factory, untrained_model):
    path = tmp_path_factory.mktemp("good") / "model.zip"
    train.write_model_archive(untrained_model, {"seed": 0}, path)
    return path


def _members(archive_path):
    with zipfile.ZipFile(archive_path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write(path, members, infos=()):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for info, data in infos:
            archive.writestr(info, data)
    return path


def test_good_archive_loads_and_predicts_like_the_original(good_archive, untrained_model):
    model = load_saved_model(good_archive)
    inputs = {"image": np.full((2, 28, 28, 1), 50.0), "addend": np.eye(10)[:2]}
    for name in ("digit", "sum"):
        np.testing.assert_allclose(model(inputs)[name], untrained_model(inputs)[name], rtol=1e-6)
    assert read_metadata(good_archive)["model_sha256"] == _sha_of_member(good_archive)


def _sha_of_member(archive_path):
    import hashlib

    return hashlib.sha256(_members(archive_path)["model.keras"]).hexdigest()


@pytest.mark.parametrize("unsafe_name", ["/etc/evil", "../evil", "a/../../evil", "C:evil"])
def test_unsafe_member_paths_are_refused(good_archive, tmp_path, unsafe_name):
    members = _members(good_archive) | {unsafe_name: b"x"}
    with pytest.raises(ValueError, match="unsafe path"):
        load_saved_model(_write(tmp_path / "evil.zip", members))


def test_symbolic_links_are_refused(good_archive, tmp_path):
    link = zipfile.ZipInfo("link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = _write(tmp_path / "link.zip", _members(good_archive), [(link, "/etc/passwd")])
    with pytest.raises(ValueError, match="symbolic link"):
        load_saved_model(path)


def test_zip_bombs_are_refused_before_unpacking(good_archive, tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in _members(good_archive).items():
            archive.writestr(name, data)
        archive.writestr("padding", b"\0" * (300 * 2**20))  # 300 MB of zeros compress to ~300 kB
    assert path.stat().st_size < 2 * 2**20
    with pytest.raises(ValueError, match="over the .* limit"):
        load_saved_model(path)


def test_tampered_model_is_refused(good_archive, tmp_path):
    members = _members(good_archive)
    members["model.keras"] = members["model.keras"][:-100] + b"\0" * 100
    with pytest.raises(ValueError, match="SHA-256"):
        load_saved_model(_write(tmp_path / "tampered.zip", members))


def test_truncated_archive_is_refused(good_archive, tmp_path):
    path = tmp_path / "truncated.zip"
    path.write_bytes(good_archive.read_bytes()[: good_archive.stat().st_size // 2])
    with pytest.raises(ValueError, match="neither a model.zip"):
        load_saved_model(path)


def test_missing_metadata_is_refused(good_archive, tmp_path):
    members = _members(good_archive)
    del members["metadata.json"]
    with pytest.raises(ValueError, match="must contain"):
        load_saved_model(_write(tmp_path / "bare.zip", members))


def test_lambda_layer_is_refused_by_safe_mode(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    keras_path = tmp_path / "model.keras"
    model.save(keras_path)
    members = {
        "model.keras": keras_path.read_bytes(),
        "metadata.json": json.dumps({"model_sha256": file_sha256(keras_path)}),
    }
    with pytest.raises(ValueError, match="could not be loaded safely"):
        load_saved_model(_write(tmp_path / "lambda.zip", members))
    with pytest.raises(ValueError, match="could not be loaded safely"):
        load_saved_model(keras_path)


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda p: p / "missing.zip", FileNotFoundError),
        (lambda p: p, ValueError),
        (lambda p: (p / "text.zip").write_text("hello") and p / "text.zip", ValueError),
    ],
)
def test_missing_directory_and_non_archives(tmp_path, make, error):
    with pytest.raises(error, match="model file"):
        load_saved_model(make(tmp_path))


def test_failed_save_keeps_previous_files(tmp_path, monkeypatch, untrained_model):
    """A full disk while saving: a one-line message, exit 2, the previous model.zip untouched."""
    previous = {name: f"previous {name}".encode() for name in ("model.zip", "training_history.log", "model_plot.png")}
    for name, content in previous.items():
        (tmp_path / name).write_bytes(content)

    def fake_training(*args, **kwargs):
        (tmp_path / "checkpoints").mkdir(exist_ok=True)
        (tmp_path / "checkpoints" / "training_history.log").write_text("epoch\n0\n")
        return untrained_model, None, {"test_digit_accuracy": 0.5, "test_sum_accuracy": 0.5}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train, "train_model", fake_training)
    monkeypatch.setattr(train, "write_model_archive", disk_full)
    assert train.main(["--output-dir", str(tmp_path)]) == 2
    for name, content in previous.items():
        assert (tmp_path / name).read_bytes() == content
