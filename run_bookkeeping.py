"""The bookkeeping of a training run, kept apart from the recipe in train.py.

- what a run logs besides Keras' metrics: `live_validation` (and the epoch's time); `read_log`;
- exact resume: `random_state_backup` (the state that Keras' BackupAndRestore does not save) and
  `live_weights_swapped_back`;
- where a run writes (`staging_dir`, one directory per worker) and how it saves: `write_model_archive`,
  `replace_all_or_none` (a failed run never replaces a saved model, log or plot), `ensure_writable`;
- what a run records to be reproduced: `provenance` (commit, data checksum, CPU, package versions);
- `distribution_strategy`: one device, the GPUs of a machine, or several machines;
- what makes CPU training faster: `fastest_precision` (bfloat16 where the CPU has the units) and
  `keep_freed_memory` (a glibc setting);
- `positive_int`: the type of the command lines' counts.
"""

import argparse
import csv
import ctypes
import hashlib
import importlib.metadata
import json
import os
import platform
import random
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

ARCHIVE_FILE = "model.zip"


def live_weights_swapped_back():
    """A callback for a run that resumes from a backup: the backup holds the averaged weights in the model (it is
    taken after SwapEMAWeights has swapped them in at the epoch's end), so once BackupAndRestore has loaded it,
    this swaps the live weights back in, as SwapEMAWeights does when an epoch starts. It does so through a
    SwapEMAWeights of its own, whose first epoch-end swap is that very swap, bit for bit."""
    import keras

    class LiveWeightsSwappedBack(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            swap = keras.callbacks.SwapEMAWeights(swap_on_epoch=True)
            swap.set_model(self.model)
            swap.set_params({"epochs": 0})  # no epoch is the last: the swap alone, not the end-of-training copy
            swap.on_epoch_end(0)

    return LiveWeightsSwappedBack()


def random_state_backup(directory):
    """A callback that saves, after each epoch, what BackupAndRestore does not and a resumed run needs to
    draw the same batches and dropout masks: Python's `random` (Keras shuffles batches with it) and the
    dropout layers' seeds; it puts them back when a resumed run starts that epoch."""
    import keras

    class RandomStateBackup(keras.callbacks.Callback):
        def dropout_seeds(self):
            return [layer.seed_generator.state for layer in self.model.layers if hasattr(layer, "seed_generator")]

        def on_epoch_begin(self, epoch, logs=None):
            saved = directory / f"random_state_{epoch}.json"
            if saved.exists():
                state = json.loads(saved.read_text())
                version, internal, gauss = state["python"]
                random.setstate((version, tuple(internal), gauss))
                for seed, value in zip(self.dropout_seeds(), state["dropout"], strict=True):
                    seed.assign(value)

        def on_epoch_end(self, epoch, logs=None):
            state = {
                "python": random.getstate(),
                "dropout": [keras.ops.convert_to_numpy(seed).tolist() for seed in self.dropout_seeds()],
            }
            directory.mkdir(parents=True, exist_ok=True)
            staged = directory / "random_state.tmp"
            staged.write_text(json.dumps(state))
            os.replace(staged, directory / f"random_state_{epoch + 1}.json")

    return RandomStateBackup()


def live_validation(val_data):
    """A callback that logs the live weights' validation (`val_live_*`, beside the averaged weights' `val_*`,
    which lag behind early on) and each epoch's wall time (`epoch_seconds`). Runs before SwapEMAWeights."""
    import keras

    class LiveValidation(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs["epoch_seconds"] = time.perf_counter() - self.started
            live = self.model.evaluate(val_data, verbose=0, return_dict=True)
            logs.update({f"val_live_{name}": value for name, value in live.items() if name != "loss"})

    return LiveValidation()


def read_log(path):
    """The rows of a CSV training log as dicts of floats ([] when there is none)."""
    if not Path(path).exists():
        return []
    with open(path, newline="") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def provenance(*arrays):
    """What it takes to reproduce a run on `arrays` (the data, as loaded): the SHA-256 of the data, the
    code's commit, the CPU, and the versions of Python and the main packages."""
    return {
        "data_sha256": data_checksum(*arrays),
        "code_version": code_version(),
        "machine": describe_cpu(),
        "versions": {"python": platform.python_version()}
        | {package: importlib.metadata.version(package) for package in ("tensorflow", "keras", "numpy")},
    }


def data_checksum(*arrays):
    """SHA-256 over the raw bytes of the arrays, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(array.tobytes())
    return digest.hexdigest()


def code_version():
    """The git commit of this checkout (with '+dirty' for uncommitted changes), or 'unknown'."""

    def git(*args):
        here = Path(__file__).resolve().parent
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit, dirty = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def describe_cpu():
    """The CPU's name, its widest vector instructions (seeded runs are bit-identical only on one of them) and
    whether it has bfloat16 units (avx512_bf16 or amx_bf16), which train in mixed_bfloat16 faster."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)}
    flags = fields.get("flags", "").split()
    return {
        "cpu": fields.get("model name") or platform.processor() or "unknown",
        "instruction_set": next((name for name in ("avx512f", "avx2", "avx") if name in flags), platform.machine()),
        "bfloat16_units": any(name in flags for name in ("avx512_bf16", "amx_bf16")),
    }


def fastest_precision():
    """The dtype policy that trains faster here: "mixed_bfloat16" on a CPU with bfloat16 units (avx512_bf16 or
    amx_bf16) when no GPU is visible, "float32" elsewhere."""
    import keras

    on_cpu = not keras.distribution.list_devices("gpu")
    return "mixed_bfloat16" if on_cpu and describe_cpu()["bfloat16_units"] else "float32"


def keep_freed_memory():
    """Ask glibc to keep freed memory rather than return it to the system: each training step frees and
    reallocates the same large buffers, and page-faulting them back in slows it down. No effect off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    trim_threshold, top_pad, mmap_threshold = -1, -2, -3  # mallopt() parameters in glibc's malloc.h
    for option, value in ((trim_threshold, 1 << 30), (mmap_threshold, 1 << 30), (top_pad, 1 << 26)):
        libc.mallopt(option, value)


def write_model_archive(model, metadata, path):
    """Write model.zip (`model.keras` + `metadata.json` with its SHA-256) aside, then rename it into place."""
    from evaluate_func import METADATA_MEMBER, MODEL_MEMBER, file_sha256

    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        keras_path, staged = Path(tmp) / MODEL_MEMBER, Path(tmp) / ARCHIVE_FILE
        model.save(keras_path)
        metadata = {**metadata, "model_sha256": file_sha256(keras_path)}
        with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(keras_path, MODEL_MEMBER)
            archive.writestr(METADATA_MEMBER, json.dumps(metadata, indent=2))
        os.replace(staged, path)


def replace_all_or_none(names, staging_dir, output_dir):
    """Move the staged files `names` into `output_dir`, all of them or, when a move fails, none: the files
    they replace are set aside first and put back."""
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".previous-") as previous:
        old = [name for name in names if (output_dir / name).exists()]
        for name in old:
            os.replace(output_dir / name, Path(previous) / name)
        moved = []
        try:
            for name in names:
                os.replace(staging_dir / name, output_dir / name)
                moved.append(name)
        except OSError:
            for name in moved:
                os.replace(output_dir / name, staging_dir / name)
            for name in old:
                os.replace(Path(previous) / name, output_dir / name)
            raise


def ensure_writable(directory):
    """Create `directory` when needed and check that files can be written in it (raises OSError)."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory):
        pass


def distribution_strategy(name):
    """The tf.distribute strategy to build the model in: "default" (one device), "mirrored" (every
    visible GPU, else every logical CPU) or "multiworker" (the processes named in $TF_CONFIG)."""
    import tensorflow as tf

    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name != "multiworker":
        return tf.distribute.get_strategy()

    class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """Mended for Keras 3 (keras-team/keras#20585): with two or more workers, `fit` asks for reductions
        of a nest of tensors and of scalars over axis 0, which the strategy refuses; each tensor is averaged
        over the replicas instead, which is what Keras wants."""

        def reduce(self, reduce_op, value, axis=None):
            reduce_across_replicas = super().reduce
            return tf.nest.map_structure(lambda one: reduce_across_replicas(reduce_op, one, None), value)

    return MultiWorkerStrategy()


def staging_dir(work_dir, strategy):
    """Where this process writes while it trains: `work_dir` for the process that saves the results (the
    chief of a multi-worker run), a directory of its own for every other worker."""
    if strategy.extended.should_checkpoint:
        return work_dir
    return work_dir / f"worker{strategy.cluster_resolver.task_id}"


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value
