"""The read passes' per-element work on every core: a plain function per element (an input
unit in pass 1, a cache file in passes 2 to 4), run on forked processes, several elements
at once, or in the worker itself.

In-process runners hand a stage's elements to one thread, and a pass's per-batch Python
(checks, hashes, groups, gathers) holds the GIL, so the passes would use one core. With
--processes (the local runners) `PooledWork` sends each element to `pass_pool`; only the
function's results travel back, and they are small: cache and fragment paths, per-class
partials, samples, histograms, counts. Elsewhere (Dataflow, Flink: a worker per core
already) the same function runs in the worker, so both ways give the same records.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipelines.reading import NS, ReadStage, windowed
from transforms.cores import process_pool

log = logging.getLogger("pipelines.balance")


class Result(NamedTuple):
    """What a pass's function returns for one element."""

    read: int  # records read (the pass's progress and total)
    rejected: int  # of those, rejected (counted on the job's last pass)
    outputs: list  # elements of the main output, or beam.pvalue.TaggedOutput
    counters: dict  # Beam counter name -> increment


def pass_pool(processes: int, create: bool = True):
    """The forked processes that run the read passes' functions, an element each at a time.
    The driver makes them before the runner starts; the stages only look them up
    (`create=False`: None when there are none, and the work runs in the worker)."""
    return process_pool(processes, _one_thread_each, create)


def _one_thread_each() -> None:
    """BLAS and image decoding on one thread in each process: the processes are the parallelism."""
    from threadpoolctl import threadpool_limits

    from transforms import images

    threadpool_limits(1, user_api="blas")
    images.DECODE_THREADS = 1


class InFlight:
    """Calls of `fn(element, *side)` on `pool`, at most `width` at once, results taken in the
    order of submission; with no pool, each call is made here.

    A call whose process died is made here, and so is every later one: the pool is dropped,
    since a new one would fork from the running runner.
    """

    def __init__(self, fn, pool, width: int):
        self.fn, self.pool, self.width = fn, pool, width
        self.pending: deque = deque()  # (element, side inputs, future), in submission order

    def add(self, element, side: tuple):
        """Submits one call; yields the results that are ready: the oldest calls' that are
        done, and the oldest's while more than `width` are in flight."""
        if self.pool is None:
            yield self.fn(element, *side)
            return
        self.pending.append((element, side, self.pool.submit(self.fn, element, *side)))
        while len(self.pending) > self.width or (self.pending and self.pending[0][2].done()):
            yield self._next()

    def drain(self):
        """The results of every call still in flight."""
        while self.pending:
            yield self._next()

    def _next(self):
        element, side, future = self.pending.popleft()
        try:
            return future.result()
        except BrokenProcessPool:
            if self.pool is not None:
                log.warning("a pass process died; the elements left run in this process")
                self.pool = None
            return self.fn(element, *side)


class PooledWork(ReadStage):
    """`fn(element, *side) -> Result` for each element: on `processes` forked processes (up to
    that many elements in flight, results out as the oldest is done) or, with 0, here.

    Only a pool the driver made is used (none: everything runs here); a dead process leaves
    its elements and every later one to this process (InFlight).
    """

    def __init__(self, name: str, progress_seconds: float, count: bool, fn, processes: int):
        super().__init__(name, progress_seconds, count)
        self.fn, self.processes = fn, processes

    def setup(self):
        super().setup()
        pool = pass_pool(self.processes, create=False) if self.processes else None
        self.calls = InFlight(self.fn, pool, self.processes)

    def process(self, element, *side):
        for result in self.calls.add(element, side):
            yield from self._outputs(result)

    def finish_bundle(self):
        for result in self.calls.drain():
            for out in self._outputs(result):
                if isinstance(out, beam.pvalue.TaggedOutput):
                    yield beam.pvalue.TaggedOutput(out.tag, windowed(out.value))
                else:
                    yield windowed(out)

    def _outputs(self, result: Result):
        yield from self.account(result.read, result.rejected)
        for name, value in result.counters.items():
            Metrics.counter(NS, name).inc(value)
        yield from result.outputs
