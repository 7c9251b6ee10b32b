"""Keras training on the balanced shards: python -m training.fit, python -m training.evaluate."""

from __future__ import annotations

import sys


def command(run) -> None:
    """A command's entry: `run()`, with a bad value reported as one line and exit status 2."""
    try:
        run()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
