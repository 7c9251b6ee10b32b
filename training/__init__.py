"""Keras training on the balanced shards: python -m training.fit, training.evaluate, training.predict."""

from __future__ import annotations

import sys

from transforms.native_logs import quiet_native_logs

quiet_native_logs()  # before any module of the package imports TensorFlow (through Keras)


def command(run) -> None:
    """A command's entry: `run()`, with a bad value reported as one line and exit status 2."""
    try:
        run()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # after the finally blocks: temporary files removed
        print("interrupted", file=sys.stderr)
        sys.exit(130)
