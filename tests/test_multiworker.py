"""train.py --strategy multiworker: two worker processes on 127.0.0.1, one of them killed mid-run, then resumed.

Each worker gets an output directory of its own, as it would on its own machine.
Every wait has a deadline and every worker still running at the end is killed,
so the test can fail but never hang (45 s on 2 CPU cores; 80 s while another training shared them).
"""

import csv
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager

import numpy as np
import pytest
from conftest import ROOT

from evaluate_func import load_saved_model, predict_digit_and_sum, read_metadata

pytestmark = pytest.mark.slow

EPOCHS = 2
WORKER_TIMEOUT = 100  # seconds for a whole run; a --quick run of two workers takes about 25 on 2 cores


def free_ports(count):
    """`count` ports that are free on 127.0.0.1 now (bound together, so they differ, then released)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@contextmanager
def two_workers(output_dirs, *args):
    """Start train.py --strategy multiworker as worker 0 (the chief) and worker 1 of one TF_CONFIG cluster,
    with their output in `output_dirs[0]` and `output_dirs[1]`; yields the two processes and kills any that
    is still running on the way out."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    processes = []
    try:
        for index, output_dir in enumerate(output_dirs):
            tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            with open(output_dir.parent / f"worker{index}.log", "a") as log:  # the worker keeps its own copy
                processes.append(
                    subprocess.Popen(
                        [sys.executable, str(ROOT / "train.py"), "--strategy", "multiworker"]
                        + ["--quick", "--epochs", str(EPOCHS), "--output-dir", str(output_dir), *args],
                        cwd=ROOT,
                        env={**os.environ, "TF_CONFIG": tf_config},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()


def epochs_logged(path):
    """The epochs in a CSV log so far (none while it does not exist)."""
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def wait_until(condition, timeout, what):
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting until {what}"
        time.sleep(0.2)


def files_under(directory):
    """The files below `directory`, as relative paths."""
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file())


def test_two_workers_train_only_the_chief_saves_and_a_killed_run_resumes(mnist, tmp_path):
    chief_dir, worker_dir = tmp_path / "chief", tmp_path / "worker"
    sentinel = b"the previous, good model"
    chief_dir.mkdir()
    (chief_dir / "model.zip").write_bytes(sentinel)
    chief_log = chief_dir / "checkpoints" / "training_history.log"
    worker_log = worker_dir / "checkpoints" / "worker1" / "training_history.log"  # its staging directory

    # Kill the chief once both workers have finished (and backed up) the first epoch.
    with two_workers([chief_dir, worker_dir]) as (chief, worker):
        wait_until(lambda: epochs_logged(chief_log) and epochs_logged(worker_log), WORKER_TIMEOUT, "epoch 0 is logged")
        chief.kill()
        # The survivor's next all-reduce fails (connection reset): it exits with an error instead of hanging.
        assert worker.wait(timeout=60) not in (0, None)
    assert (chief_dir / "model.zip").read_bytes() == sentinel  # nothing half-written replaced it
    assert not (chief_dir / "training_history.log").exists() and not (worker_dir / "model.zip").exists()

    # Both restart with --resume, each from its own BackupAndRestore state, and finish the run.
    with two_workers([chief_dir, worker_dir], "--resume") as workers:
        return_codes = [process.wait(timeout=WORKER_TIMEOUT) for process in workers]
    assert return_codes == [0, 0], [(tmp_path / f"worker{i}.log").read_text()[-2000:] for i in (0, 1)]
    assert "the chief saves the results" in (tmp_path / "worker1.log").read_text()

    assert files_under(worker_dir) == []  # the other worker's staging directory is gone
    assert epochs_logged(chief_dir / "training_history.log") == [0, 1]  # appended after the restart
    metadata = read_metadata(chief_dir / "model.zip")
    assert metadata["settings"]["strategy"] == "multiworker" and metadata["epochs_requested"] == EPOCHS

    _, (x_test, y_test) = mnist
    images, digits, addends = x_test[:500], y_test[:500], np.arange(500) % 10
    predicted = predict_digit_and_sum(load_saved_model(chief_dir / "model.zip"), images, addends)
    assert np.mean(predicted["digit"] == digits) >= 0.9
    assert np.mean(predicted["sum"] == digits + addends) >= 0.5  # the sum head learns more slowly
