"""Import Keras without TensorFlow's C++ start-up notices on the terminal.

TensorFlow's C++ libraries print notices (oneDNN, CUDA, CPU features) to the
process's stderr while they load, before any Python logging setting can apply.
`import_keras_quietly()` loads them once with stderr pointed at /dev/null and
`TF_CPP_MIN_LOG_LEVEL` at 3; every later `import keras` is then silent. An
error while loading still raises and shows its traceback; only what is written
to stderr during the import itself is lost. The scripts and the notebook call
it before they import the modules that use Keras.
"""

import contextlib
import os
import sys

TF_CPP_MIN_LOG_LEVEL = "3"  # TensorFlow's C++ logging: fatal errors only


def import_keras_quietly():
    """Import and return `keras`, its TensorFlow backend loaded without the C++ notices."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_CPP_MIN_LOG_LEVEL)
    with native_stderr_silenced():
        import keras
    return keras


@contextlib.contextmanager
def native_stderr_silenced():
    """Point file descriptor 2 (what C and C++ code write to) at /dev/null for the `with` block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
