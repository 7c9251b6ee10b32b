"""A Map whose elements run a few at once: on threads of the worker (the k-means fit per
class: scikit-learn releases the GIL) or on the pass processes (the merge per shard, whose
TFRecord encoding is Python per record).

In-process runners hand a stage's elements to one thread; the k-means fit of each class
and the merge of each shard are independent and long (seconds), so running two or more
at once uses the other cores. Results come out as they complete, in any order (their
consumers are keyed: a side-input dict, a list finalize indexes by destination). At most
`threads` (or `processes`) elements are in flight, so memory stays that of that many
elements.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import apache_beam as beam

from pipelines import pooled
from pipelines.reading import windowed
from transforms.cores import worker_threads

log = logging.getLogger("pipelines.balance")


class ThreadedMap(beam.DoFn):
    """`fn(element, *side_inputs)` for each element, on `threads` threads, or with `processes`
    on the pass processes (pooled.pass_pool; `fn` must then pickle: a module's function);
    one output each.

    An exception in `fn` fails the bundle as it would in a plain Map (re-raised here). When
    a pass process dies, its elements and every later one run here.
    """

    def __init__(self, fn, threads: int | None = None, processes: int = 0):
        self.fn = fn
        self.threads, self.processes = threads, processes

    def setup(self):
        self.width = self.processes or self.threads or worker_threads()
        self.pool = pooled.pass_pool(self.processes, create=False) if self.processes else None
        if self.pool is None:  # threads; also where the driver made no pass processes
            self.processes = 0
            self.pool = ThreadPoolExecutor(self.width)

    def start_bundle(self):
        self.pending: deque = deque()  # (element, side inputs, future)

    def process(self, element, *side):
        self.pending.append((element, side, self.pool.submit(self.fn, element, *side)))
        while len(self.pending) > self.width or (self.pending and self.pending[0][2].done()):
            yield self._next()

    def finish_bundle(self):
        while self.pending:
            yield windowed(self._next())

    def _next(self):
        element, side, future = self.pending.popleft()
        try:
            return future.result()
        except BrokenProcessPool:
            if self.processes:  # once: the later elements go to threads of this process
                log.warning("a pass process died; the elements left run in this process")
                self.processes = 0
                self.pool = ThreadPoolExecutor(self.width)
            return self.fn(element, *side)

    def teardown(self):
        if not self.processes:  # the pass processes are the job's, shut down at its end
            self.pool.shutdown(wait=True, cancel_futures=True)
