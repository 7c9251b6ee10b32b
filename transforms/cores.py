"""How many threads a worker's own parallel work uses (decoding, fits, merges), the one
thread pool that runs the short tasks of that work (runs of images to decode), and the
process pool that decodes images where per-image Python work would hold the GIL."""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections import deque
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

_POOL: ThreadPoolExecutor | None = None
_PROCESSES: dict[int, ProcessPoolExecutor] = {}


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


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def process_pool(processes: int) -> ProcessPoolExecutor:
    """This process's pool of `processes` forked worker processes, made on first use.

    Forked, not spawned: a spawned worker imports the main module again (the whole job,
    Beam included: seconds per worker), a forked one starts with what is loaded. Its
    tasks (decoding images: Pillow and numpy) take no lock another thread of the parent
    could have held at the fork, and the workers are made at once, on the first task
    (Python 3.12's warning about forking a process with threads is silenced for that
    one call). Where fork is not available, callers decode in their own process.
    """
    pool = _PROCESSES.get(processes)
    if pool is None:
        pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            list(pool.map(int, range(processes)))  # starts every worker now
        _PROCESSES[processes] = pool
    return pool


def _forget_pools() -> None:
    """In a forked child, the parent's pools are not its own (their threads and processes
    are the parent's): it makes its own if it needs them."""
    global _POOL
    _POOL = None
    _PROCESSES.clear()


os.register_at_fork(after_in_child=_forget_pools)


def map_ahead(pool: Executor | None, fn, items, depth: int):
    """(tag, fn(arg)) for each (tag, arg) of `items`, in order, with up to `depth` calls
    running on `pool` while the caller works on the results before them (`pool` None:
    each call made here, when its result is asked for).

    When `items` raises part-way, the results of the items before it are yielded first,
    then the error is raised.
    """
    if pool is None:
        for tag, arg in items:
            yield tag, fn(arg)
        return
    pending: deque = deque()
    try:
        for tag, arg in items:
            pending.append((tag, pool.submit(fn, arg)))
            if len(pending) > depth:
                tag0, done = pending.popleft()
                yield tag0, done.result()
    except Exception:
        while pending:
            tag0, done = pending.popleft()
            yield tag0, done.result()
        raise
    while pending:
        tag0, done = pending.popleft()
        yield tag0, done.result()
