"""Local parallelism, in one place: the job's forked processes, the worker's decode threads,
and one parallel map over elements (`InFlight`) that every parallel stage uses.

In-process runners (the DirectRunner, FnApiRunner) hand a stage's elements to one thread,
and the passes' per-batch Python holds the GIL, so a job would use one core. Where every
bundle runs in the launching process (`job.flags.runs_here`), the driver forks `start(n)`
processes before the runner starts, while it has no other threads; the stages send them
whole elements (an input unit, a cache file, a class's k-means sample, a shard's
fragments), a few at once, and take the results back in submission order (`InFlight`).
Elsewhere (Dataflow, Flink: a worker per core already) there are none, and the same
functions run in the worker, so both ways give the same records.

  ParallelMap   fn(element, *side) -> one output: the k-means fits, the shard merges
  (inputs.reading.PassWork: a read pass, pass 1's units and the cache files of passes 2
  to 4, with the read stages' bookkeeping)

A process that dies leaves its elements, and every later one, to the worker (one
fallback, in `InFlight`): a new pool would fork from the running runner's threads.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import OrderedDict, deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import NamedTuple

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

log = logging.getLogger("pipelines.balance")

_PROCESSES: ProcessPoolExecutor | None = None  # the running job's, made by `start`
_WIDTH = 0  # how many processes it has
_THREADS: ThreadPoolExecutor | None = None  # the worker's decode threads, made on first use
_SIDE_FOLDER: str | None = None  # side inputs sent to the processes as files (InFlight._sent)
_IN_JOB_PROCESS = False  # True in a forked job process: the processes are the parallelism
_LOCK = threading.Lock()


def local_cores(cap: int = 4) -> int:
    """The cores this process may run on, at most `cap`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cap, cores))


def can_fork() -> bool:
    """Linux only: macOS offers fork, but its system libraries are not safe across one."""
    return sys.platform.startswith("linux")


def start(processes: int, fits: bool = False) -> None:
    """Forks the job's `processes` processes now (the driver, before the runner starts).

    Forked, not spawned: a spawned process imports the main module again (the whole job,
    Beam included: seconds each), a forked one starts with what is loaded. With `fits`
    (the cluster strategy) each imports scikit-learn on a thread of its own as it starts,
    so the import is done, on another core, by the time the first k-means fit arrives.
    Each exits when its parent is gone, even after a kill -9. Processes of the same number
    that an earlier job in this process started are used again while they all work; with
    0, the job has none.
    """
    global _PROCESSES, _WIDTH
    if processes == 0:
        shutdown()
        return
    if _PROCESSES is not None and _WIDTH == processes and _working(_PROCESSES, processes):
        return
    shutdown()
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"),
                               initializer=_start_process, initargs=(os.getpid(), fits))
    with warnings.catch_warnings():  # Python 3.12+ warns about any fork of a process with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        list(pool.map(int, range(processes)))  # starts every process now
    with _LOCK:
        _PROCESSES, _WIDTH = pool, processes


def _working(pool: ProcessPoolExecutor, n: int) -> bool:
    """Whether `pool` still works: a process that died, even while the pool sat idle, breaks
    it, and its calls then raise BrokenProcessPool."""
    try:
        list(pool.map(int, range(n)))
        return True
    except BrokenProcessPool:
        return False


def processes() -> tuple[ProcessPoolExecutor | None, int]:
    """The running job's processes and how many (None, 1: there are none, and the work runs
    in the worker)."""
    if _IN_JOB_PROCESS or _PROCESSES is None:
        return None, 1
    return _PROCESSES, _WIDTH


def decode_threads() -> ThreadPoolExecutor | None:
    """The worker's threads for decoding large images (`local_cores()` of them, made on first
    use); None in a job process, whose siblings use the other cores."""
    global _THREADS
    if _IN_JOB_PROCESS:
        return None
    with _LOCK:  # two threads asking first make one pool, not one each
        if _THREADS is None:
            _THREADS = ThreadPoolExecutor(local_cores(), thread_name_prefix="decode")
        return _THREADS


def shutdown() -> None:
    """Ends the job's processes and the decode threads (they finish what they hold)."""
    global _PROCESSES, _THREADS, _SIDE_FOLDER
    with _LOCK:
        pools = [p for p in (_PROCESSES, _THREADS) if p is not None]
        _PROCESSES = _THREADS = None
        side, _SIDE_FOLDER = _SIDE_FOLDER, None
    for pool in pools:
        pool.shutdown(wait=True)
    if side:
        shutil.rmtree(side, ignore_errors=True)


def _start_process(parent: int, fits: bool) -> None:
    global _IN_JOB_PROCESS
    _IN_JOB_PROCESS = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, and the watch below then ends us
    threading.Thread(target=_exit_with_parent, args=(parent,), name="exit-with-parent", daemon=True).start()
    _one_blas_thread()
    if fits:
        threading.Thread(target=_import_for_fits, name="import-scikit-learn", daemon=True).start()


def _one_blas_thread() -> None:
    """Process-wide, for every BLAS loaded by now: the processes are the parallelism."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


def _import_for_fits() -> None:
    import sklearn.cluster  # noqa: F401 - the first fit waits on this import, not on a second one

    _one_blas_thread()  # scipy's BLAS, loaded by the import


def _exit_with_parent(parent: int) -> None:
    """A job process's watch: its parent gone (killed, or exited without a shutdown), it exits."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _forget_pools() -> None:
    """In any forked child, the parent's pools are not its own (their threads and processes
    are the parent's)."""
    global _PROCESSES, _THREADS, _SIDE_FOLDER, _LOCK
    _PROCESSES = _THREADS = _SIDE_FOLDER = None
    _LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools)


class InFlight:
    """Calls of `fn(element, *side)` on `pool`, results taken in the order of submission; at
    most `width` + 1 submitted (one waiting, so that no process idles while the oldest's
    result is taken), which bounds the memory to that of a few elements. With no pool, or
    where `here(element)` is true, the call is made here.

    A call whose process died is made here, and so is every later one.
    """

    def __init__(self, fn, pool, width: int, here=None):
        self.fn, self.pool, self.width, self.here = fn, pool, max(1, width), here
        self.pending: deque = deque()  # (element, side inputs, future or None), in submission order
        self.shared: OrderedDict = OrderedDict()  # id(side input) -> (it, what is sent in its place), the last few

    def add(self, element, side: tuple):
        """Submits one call; yields the results that are ready: the oldest calls' that are
        done, and the oldest's while more than `width` are in flight."""
        future = None
        if self.pool is not None and not (self.here and self.here(element)):
            try:
                future = self.pool.submit(_call, self.fn, element, *self._sent(side))
            except BrokenProcessPool:  # a process died while the pool sat idle
                self._lost()
        if future is None and not self.pending:
            yield self.fn(element, *side)
            return
        self.pending.append((element, side, future))
        while len(self.pending) > self.width or (self.pending and _done(self.pending[0][2])):
            yield self._next()

    def drain(self):
        """The results of every call still in flight."""
        while self.pending:
            yield self._next()

    def _next(self):
        element, side, future = self.pending.popleft()
        if future is not None:
            try:
                return future.result()
            except BrokenProcessPool:
                self._lost()
        return self.fn(element, *side)

    def _sent(self, side: tuple) -> tuple:
        """What is sent for each side input: itself when small; else, once written to a file
        (the first time this InFlight sends it), the file's name, which each process loads
        once (`_call`). So a side input whose size grows with the classes (counts,
        centroids, the plan) is pickled once per stage, not once per element."""
        sent = []
        for value in side:
            known = self.shared.get(id(value))
            if known is None:
                data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
                if len(data) <= SHARE_BYTES:
                    known = (value, value)
                else:
                    path = os.path.join(_side_folder(), f"{uuid.uuid4().hex}.pickle")
                    with open(path, "wb") as f:
                        f.write(data)
                    known = (value, _SideFile(path))
                self.shared[id(value)] = known  # the value is kept: its id is not reused meanwhile
                while len(self.shared) > 8:  # a new side input per bundle must not pile up here
                    self.shared.popitem(last=False)
            sent.append(known[1])
        return tuple(sent)

    def _lost(self) -> None:
        if self.pool is not None:
            log.warning("a job process died; the elements left run in this process")
            self.pool = None


def windowed(value):
    """An output of finish_bundle, which must carry its window."""
    return GlobalWindows.windowed_value(value)


SHARE_BYTES = 1 << 16  # side inputs pickled larger than this reach each process through a file
_LOADED: OrderedDict = OrderedDict()  # in a job process: side-input file -> its value, the last few


class _SideFile(NamedTuple):
    path: str


def _call(fn, element, *side):
    """In a job process: `fn` on the element, side inputs sent as files loaded once each."""
    return fn(element, *(_load(s.path) if isinstance(s, _SideFile) else s for s in side))


def _load(path: str):
    if path not in _LOADED:
        with open(path, "rb") as f:
            _LOADED[path] = pickle.load(f)
        while len(_LOADED) > 8:  # a few stages' side inputs at most
            _LOADED.popitem(last=False)
    return _LOADED[path]


def _side_folder() -> str:
    """This process's folder for side-input files, removed by `shutdown` (named like the
    job's local scratch, so a killed run's is removed by the next run's driver)."""
    global _SIDE_FOLDER
    with _LOCK:
        if _SIDE_FOLDER is None or not os.path.isdir(_SIDE_FOLDER):
            _SIDE_FOLDER = tempfile.mkdtemp(prefix=f"balance-scratch-{os.getpid()}-side-")
        return _SIDE_FOLDER


def _done(future) -> bool:
    return future is None or future.done()


class ParallelMap(beam.DoFn):
    """`fn(element, *side_inputs)` for each element, one output each, on the job's processes
    (`fn` must then pickle: a module's function or a small object) or, where there are
    none, here. Results come out in the order the elements came in. Elements for which
    `here(element)` is true run here (a sample too large to send).

    An exception in `fn` fails the bundle as it would in a plain Map (re-raised here).
    """

    def __init__(self, fn, here=None):
        self.fn, self.here = fn, here

    def setup(self):
        self.calls = InFlight(self.fn, *processes(), self.here)

    def process(self, element, *side):
        yield from self.calls.add(element, side)

    def finish_bundle(self):
        for result in self.calls.drain():
            yield windowed(result)
