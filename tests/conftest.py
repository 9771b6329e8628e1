"""Shared fixtures: the real MNIST (skipped without it), no network, small image sets and one untrained model;
Hypothesis' settings for CI."""

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no C++ start-up chatter from subprocesses

# Locally Hypothesis draws new inputs every run and remembers failing ones in .hypothesis/ (not in git).
# In CI (which sets $CI) every run draws the same inputs, so a red build can be rerun and reproduced.
# No deadline in either: an example that is slow on a busy machine is not a failure.
settings.register_profile("local", deadline=None)
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "local")


TENSORFLOW_LOG_LINE = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} \d\d:\d\d:\d\d)")


def own_stderr_lines(stderr):
    """The lines a script wrote itself, without TensorFlow's C++ start-up log (which no setting silences)."""
    return [line for line in stderr.splitlines() if line.strip() and not TENSORFLOW_LOG_LINE.match(line)]


@pytest.fixture(scope="session")
def mnist():
    """`(x_train, y_train), (x_test, y_test)` from $MNIST_NPZ; skips the test when it is not set."""
    path = os.environ.get("MNIST_NPZ")
    if not path or not os.path.exists(path):
        pytest.skip("MNIST_NPZ is not set to an mnist.npz (make test sets it to ../shared/data/mnist.npz)")
    from data_creation import load_mnist

    return load_mnist(path)


@pytest.fixture
def offline(monkeypatch):
    """No MNIST_NPZ and a Keras download that fails the way it does without a network."""
    import keras

    def failed_fetch():
        raise Exception("URL fetch failure on https://example.invalid/mnist.npz: None -- no network")

    monkeypatch.delenv("MNIST_NPZ", raising=False)
    monkeypatch.setattr(keras.datasets.mnist, "load_data", failed_fetch)


@pytest.fixture
def digit_images():
    """20 synthetic uint8 (28, 28) images and their labels, for tests that need no real data."""
    rng = np.random.default_rng(0)
    images = np.zeros((20, 28, 28), np.uint8)
    images[:, 8:20, 10:18] = rng.integers(100, 256, size=(20, 12, 8))
    return images, np.arange(20) % 10


@pytest.fixture(scope="session")
def untrained_model():
    from network_architecture import build_model

    return build_model()


@pytest.fixture(scope="session")
def trained_model():
    """The committed model.zip, loaded once; skips the test when it is not there."""
    path = ROOT / "model.zip"
    if not path.exists():
        pytest.skip("model.zip is absent: run `make train`")
    from evaluate_func import load_saved_model

    return load_saved_model(path)
