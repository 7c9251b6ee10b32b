"""How many threads a worker's own parallel work uses (decoding, gzip, fits, merges)."""

from __future__ import annotations

import os


def worker_threads(cap: int = 4) -> int:
    """The cores this process may run on, at most `cap`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cap, cores))
