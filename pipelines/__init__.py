"""The Beam job: python -m pipelines.balance, python -m pipelines.histogram.

Importing the package quiets TensorFlow's C++ start-up lines
(`transforms.native_logs.quiet_native_logs`, which training's package calls too): it must
run before TensorFlow loads, and a package's __init__ runs before any of its modules.
"""

from __future__ import annotations

import os
import sys

from transforms.native_logs import quiet_native_logs

quiet_native_logs()


def _quiet_interrupt(signum, frame) -> None:
    print("interrupted", file=sys.stderr)
    os._exit(130)


# `python -m pipelines.balance` (and the other commands) import this package while the
# module is still being found, when sys.argv[0] is "-m": Ctrl-C during the imports that
# follow (a second or two of Beam and TensorFlow) is one line and status 130, not a
# traceback. The commands' own handlers replace this one once they start.
if sys.argv[:1] == ["-m"]:
    import signal

    signal.signal(signal.SIGINT, _quiet_interrupt)
