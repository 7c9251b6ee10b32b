"""How many threads a worker's own parallel work uses (decoding, fits, merges), the one
thread pool that runs the short tasks of that work (runs of images to decode), and the
forked process pools for work whose Python would hold the GIL (decoding images, the
k-means fits: see images.decode_pool and kmeans.fit_pool)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections import deque
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

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


def process_pool(processes: int, initializer=None) -> ProcessPoolExecutor:
    """This process's pool of `processes` forked worker processes whose workers ran
    `initializer` first, made on first use (one pool per width and initializer).

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
            pool = None
        if pool is None:
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


def map_ahead(pool: Executor | None, fn, items, depth: int):
    """(tag, fn(arg)) for each (tag, arg) of `items`, in order, with up to `depth` calls
    running on `pool` while the caller works on the results before them (`pool` None:
    each call made here, when its result is asked for).

    When `items` raises part-way, the results of the items before it are yielded first,
    then its error is raised; a call that fails raises its error in its turn.
    """
    if pool is None:
        for tag, arg in items:
            yield tag, fn(arg)
        return
    pending: deque = deque()
    items = iter(items)
    try:
        while True:
            try:
                tag, arg = next(items)
            except StopIteration:
                break
            except Exception:
                yield from _results(pending)
                raise
            pending.append((tag, pool.submit(fn, arg)))
            if len(pending) > depth:
                yield from _results(pending, 1)
        yield from _results(pending)
    finally:  # stopped early (an error, or the consumer closed us): what is still queued is not needed
        for _, left in pending:
            left.cancel()


def _results(pending: deque, count: int | None = None):
    """(tag, result) of the first `count` (all) pending calls, taken off `pending` in order."""
    for _ in range(len(pending) if count is None else count):
        tag, done = pending.popleft()
        yield tag, done.result()
