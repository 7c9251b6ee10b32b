"""How many threads a worker's own parallel work uses (decoding, fits, merges), the one
thread pool that runs the short tasks of that work (runs of large images to decode), and
the forked process pools for work whose Python would hold the GIL (the read passes and
the merges: pipelines/pooled.py; the k-means fits: kmeans.fit_pool)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

_POOL: ThreadPoolExecutor | None = None
_PROCESSES: dict[tuple, ProcessPoolExecutor] = {}  # by (processes, initializer)
_LOCK = threading.Lock()


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
    with _LOCK:  # two threads asking first make one pool, not one each
        if _POOL is None:
            _POOL = ThreadPoolExecutor(worker_threads(), thread_name_prefix="worker")
        return _POOL


def can_fork() -> bool:
    """Linux only: macOS offers fork, but its system libraries are not safe across one."""
    return sys.platform.startswith("linux")


def process_pool(processes: int, initializer=None, create: bool = True) -> ProcessPoolExecutor | None:
    """This process's pool of `processes` forked worker processes whose workers ran
    `initializer` first, made on first use (one pool per width and initializer).

    `create=False` (the job's stages, which run among the runner's threads) only looks the
    pool up: None when there is no healthy one, so that nothing forks once the job runs.

    Forked, not spawned: a spawned worker imports the main module again (the whole job,
    Beam included: seconds per worker), a forked one starts with what is loaded. The
    workers are made at once, when the pool is (the job makes it before the pipeline
    runs, while it has no other threads). Each exits when its parent is gone, even after
    a kill -9. A pool one of whose workers died (its tasks raise BrokenProcessPool) is
    replaced by the next call.
    """
    with _LOCK:
        pool = _PROCESSES.get((processes, initializer))
        if pool is not None and not _healthy(pool):  # a worker died, in a task or while the pool sat idle
            pool.shutdown(wait=False, cancel_futures=True)
            del _PROCESSES[processes, initializer]
            pool = None
        if pool is None and create:
            pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"),
                                       initializer=_start_worker, initargs=(os.getpid(), initializer))
            with warnings.catch_warnings():  # Python 3.12+ warns about any fork of a process with threads
                warnings.simplefilter("ignore", DeprecationWarning)
                list(pool.map(int, range(processes)))  # starts every worker now
            _PROCESSES[processes, initializer] = pool
        return pool


def shutdown_pools() -> None:
    """Ends this process's pools; they wait for the tasks they hold, and a later call makes new ones."""
    global _POOL
    with _LOCK:
        pools = [*_PROCESSES.values(), *([_POOL] if _POOL else [])]
        _PROCESSES.clear()
        _POOL = None
    for pool in pools:
        pool.shutdown(wait=True)


def _healthy(pool: ProcessPoolExecutor) -> bool:
    return not pool._broken and all(p.is_alive() for p in pool._processes.values())


def _start_worker(parent: int, initializer) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, and the watch below then ends us
    threading.Thread(target=_exit_with_parent, args=(parent,), name="exit-with-parent", daemon=True).start()
    if initializer:
        initializer()


def _exit_with_parent(parent: int) -> None:
    """A worker's watch: its parent gone (killed, or exited without shutting the pool), it exits."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _forget_pools() -> None:
    """In a forked child, the parent's pools are not its own (their threads and processes
    are the parent's): it makes its own if it needs them."""
    global _POOL, _LOCK
    _POOL = None
    _PROCESSES.clear()
    _LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools)
