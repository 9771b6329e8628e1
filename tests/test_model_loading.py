"""model.zip is untrusted input: hostile archives are refused with a clear message."""

import json
import stat
import struct
import zipfile

import keras
import numpy as np
import pytest

import evaluate_func
import run_bookkeeping
import train
from evaluate_func import file_sha256, load_saved_model, read_metadata


@pytest.fixture(scope="module")
def good_archive(tmp_path_factory, untrained_model):
    path = tmp_path_factory.mktemp("good") / "model.zip"
    run_bookkeeping.write_model_archive(untrained_model, {"seed": 0}, path)
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


@pytest.mark.parametrize("unsafe_name", ["/etc/evil", "\\evil", "../evil", "a/../../evil", "a\\..\\..\\evil", "C:evil"])
def test_unsafe_member_paths_are_refused(good_archive, tmp_path, unsafe_name):
    members = _members(good_archive) | {unsafe_name: b"x"}
    with pytest.raises(ValueError, match="evil.zip': refusing member with an unsafe path") as raised:
        load_saved_model(_write(tmp_path / "evil.zip", members))
    assert repr(unsafe_name) in str(raised.value)


def test_symbolic_links_are_refused(good_archive, tmp_path):
    link = zipfile.ZipInfo("link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = _write(tmp_path / "link.zip", _members(good_archive), [(link, "/etc/passwd")])
    with pytest.raises(ValueError, match="link.zip': refusing member 'link', which is a symbolic link"):
        load_saved_model(path)


def test_zip_bombs_are_refused_before_unpacking(good_archive, tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in _members(good_archive).items():
            archive.writestr(name, data)
        archive.writestr("padding", b"\0" * (300 * 2**20))  # 300 MB of zeros compress to ~300 kB
    assert path.stat().st_size < 2 * 2**20
    with pytest.raises(ValueError, match="bomb.zip' unpacks to .* bytes, over the 268,435,456 limit"):
        load_saved_model(path)


def test_an_archive_right_at_the_size_limit_loads(good_archive, monkeypatch):
    with zipfile.ZipFile(good_archive) as archive:
        unpacked = sum(member.file_size for member in archive.infolist())
    monkeypatch.setattr(evaluate_func, "MAX_UNCOMPRESSED_BYTES", unpacked)
    assert load_saved_model(good_archive).name == "mnist_digit_sum"
    monkeypatch.setattr(evaluate_func, "MAX_UNCOMPRESSED_BYTES", unpacked - 1)
    with pytest.raises(ValueError, match="over the"):
        load_saved_model(good_archive)


def test_loading_writes_nothing_where_it_runs_and_reads_model_zip_by_default(good_archive, tmp_path, monkeypatch):
    """The model is unpacked into a private temporary directory, never into the working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.zip").write_bytes(good_archive.read_bytes())
    assert load_saved_model().name == "mnist_digit_sum" and read_metadata() == read_metadata(good_archive)
    assert [path.name for path in tmp_path.iterdir()] == ["model.zip"]


def test_tampered_model_is_refused(good_archive, tmp_path):
    members = _members(good_archive)
    members["model.keras"] = members["model.keras"][:-100] + b"\0" * 100
    with pytest.raises(ValueError, match="SHA-256"):
        load_saved_model(_write(tmp_path / "tampered.zip", members))


def test_truncated_archive_is_refused(good_archive, tmp_path):
    path = tmp_path / "truncated.zip"
    path.write_bytes(good_archive.read_bytes()[: good_archive.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.zip' is neither a model.zip"):
        load_saved_model(path)
    with pytest.raises(ValueError, match="truncated.zip' is not a model.zip archive"):
        read_metadata(path)


def compressed_bytes(archive_path, name):
    """Where the deflated bytes of member `name` lie in the archive file: (first byte, count)."""
    with zipfile.ZipFile(archive_path) as archive:
        member = archive.getinfo(name)
    with open(archive_path, "rb") as handle:
        handle.seek(member.header_offset + 26)  # the local header's name and extra-field lengths
        name_length, extra_length = struct.unpack("<HH", handle.read(4))
    return member.header_offset + 30 + name_length + extra_length, member.compress_size


@pytest.mark.parametrize(
    "member, where, damage, readers",
    [
        # A first block header of the reserved type: zlib stops at once ("invalid block type").
        ("model.keras", 0.0, b"\xff", [load_saved_model]),
        # Garbage in the middle that still inflates, to bytes whose CRC-32 is wrong.
        ("model.keras", 0.5, b"\xff" * 64, [load_saved_model]),
        ("metadata.json", 0.0, b"\xff", [load_saved_model, read_metadata]),
    ],
)
def test_damaged_compressed_bytes_are_reported_by_name(good_archive, tmp_path, member, where, damage, readers):
    data = bytearray(good_archive.read_bytes())
    start, count = compressed_bytes(good_archive, member)
    offset = start + int(where * count)
    data[offset : offset + len(damage)] = damage
    path = tmp_path / "damaged.zip"
    path.write_bytes(data)
    for read in readers:
        with pytest.raises(ValueError, match="damaged.zip' is corrupt"):
            read(path)


def test_a_damaged_keras_file_is_reported_by_name(good_archive, tmp_path):
    path = tmp_path / "damaged.keras"
    model_bytes = bytearray(_members(good_archive)["model.keras"])
    middle = len(model_bytes) // 2
    model_bytes[middle : middle + 4096] = b"\0" * 4096
    path.write_bytes(model_bytes)
    with pytest.raises(ValueError, match="damaged.keras' is not a readable Keras model"):
        load_saved_model(path)


def test_missing_metadata_is_refused(good_archive, tmp_path):
    members = _members(good_archive)
    del members["metadata.json"]
    path = _write(tmp_path / "bare.zip", members)
    for read in (load_saved_model, read_metadata):
        with pytest.raises(ValueError, match="bare.zip' must contain model.keras and metadata.json"):
            read(path)


@pytest.mark.parametrize(
    "metadata, message, readers",
    [
        (b"{not json", "metadata.json is not JSON", [load_saved_model, read_metadata]),
        (b"\xff\xfe", "metadata.json is not JSON", [load_saved_model, read_metadata]),
        (b'["model_sha256"]', "metadata.json holds a list, not an object", [load_saved_model, read_metadata]),
        (b'{"seed": 0}', "metadata.json records no model_sha256", [load_saved_model]),
    ],
)
def test_bad_metadata_is_refused(good_archive, tmp_path, metadata, message, readers):
    path = _write(tmp_path / "odd.zip", _members(good_archive) | {"metadata.json": metadata})
    for read in readers:
        with pytest.raises(ValueError, match=f"odd.zip': {message}"):
            read(path)


def test_lambda_layer_is_refused_by_safe_mode(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    keras_path = tmp_path / "model.keras"
    model.save(keras_path)
    members = {
        "model.keras": keras_path.read_bytes(),
        "metadata.json": json.dumps({"model_sha256": file_sha256(keras_path)}),
    }
    with pytest.raises(ValueError, match="lambda.zip' could not be loaded safely"):
        load_saved_model(_write(tmp_path / "lambda.zip", members))
    with pytest.raises(ValueError, match="model.keras' could not be loaded safely"):
        load_saved_model(keras_path)


def test_missing_directory_and_non_archives(tmp_path):
    text = tmp_path / "text.zip"
    text.write_text("hello")
    for read in (load_saved_model, read_metadata):
        with pytest.raises(FileNotFoundError, match="model file '.*missing.zip' does not exist"):
            read(tmp_path / "missing.zip")
        with pytest.raises(ValueError, match=f"model file '{tmp_path}' is a directory"):
            read(tmp_path)
        with pytest.raises(ValueError, match="model file '.*text.zip' is (neither|not) a model.zip archive"):
            read(text)


def test_failed_save_keeps_previous_files(tmp_path, monkeypatch, capsys, untrained_model):
    """A full disk while saving: a one-line message, exit 2, the previous model.zip untouched."""
    previous = {name: f"previous {name}".encode() for name in ("model.zip", "training_history.log", "model_plot.png")}
    for name, content in previous.items():
        (tmp_path / name).write_bytes(content)

    def fake_training(*args, **kwargs):
        (tmp_path / "checkpoints").mkdir(exist_ok=True)
        (tmp_path / "checkpoints" / "training_history.log").write_text("epoch\n0\n")
        return untrained_model, {"test_digit_accuracy": 0.5, "test_sum_accuracy": 0.5}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train, "train_model", fake_training)
    monkeypatch.setattr(train, "write_model_archive", disk_full)
    assert train.main(["--output-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("train.py: error: could not save the results") and "No space left" in error
    for name, content in previous.items():
        assert (tmp_path / name).read_bytes() == content
