"""TensorFlow's C++ start-up lines off for the commands (the jobs' and the trainer's)."""

from __future__ import annotations

import contextlib
import importlib.machinery
import os
import re
import sys
import tempfile

# absl's note that it is not initialised, and C++ INFO / WARNING lines (I0000 00:00:... file.cc:31] ...)
NATIVE_NOISE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] ")
QUIETED = "PIPELINES_QUIETED_TF"  # marks TF_CPP_MIN_LOG_LEVEL as set here, not by the user


def quiet_native_logs() -> None:
    """TensorFlow's C++ log lines off, unless the user set TF_CPP_MIN_LOG_LEVEL (0 shows them all).

    Sets TF_CPP_MIN_LOG_LEVEL=3 (no cuInit error, CPU-feature or allocator notes), and
    drops the lines TensorFlow 2.21 prints while it loads whatever that variable says
    (absl's "before absl::InitializeLog()" note, "Could not find cuda drivers"): while
    `import tensorflow` runs, file descriptor 2 goes to a temporary file, whose lines
    other than those are then written to stderr. Python warnings and errors are not
    touched.
    """
    ours = os.environ.get(QUIETED) == "1"  # set by a parent process: its workers quiet too
    if ("TF_CPP_MIN_LOG_LEVEL" in os.environ and not ours) or "tensorflow" in sys.modules:
        return
    os.environ.update({"TF_CPP_MIN_LOG_LEVEL": "3", QUIETED: "1"})

    @contextlib.contextmanager
    def stderr_filtered():
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as caught:
            os.dup2(caught.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                caught.seek(0)
                lines = caught.read().decode("utf-8", "replace").splitlines(keepends=True)
                sys.stderr.write("".join(line for line in lines if not NATIVE_NOISE.match(line)))
                sys.stderr.flush()

    class FirstImport:  # a meta path finder for the first `import tensorflow` only
        def find_spec(self, name, path=None, target=None):
            if name != "tensorflow":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is not None and spec.loader is not None:
                load = spec.loader.exec_module

                def exec_module(module):
                    with stderr_filtered():
                        load(module)

                spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, FirstImport())
