"""How many threads a worker's own parallel work uses (decoding, fits, merges), and the
one thread pool that runs the short tasks of that work (runs of images to decode)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

_POOL: ThreadPoolExecutor | None = None


def worker_threads(cap: int = 4) -> int:
    """The cores this process may run on, at most `cap`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cap, cores))


def shared_pool() -> ThreadPoolExecutor:
    """This process's pool of `worker_threads()` threads, made on first use.

    For tasks that release the GIL and submit nothing themselves (a run of images to
    decode): callers on different threads may share it without deadlock.
    """
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(worker_threads(), thread_name_prefix="worker")
    return _POOL
