"""A Map whose elements run on a few threads of the worker: every core for work that
releases the GIL (the k-means fits, the shard merges: numpy, scikit-learn, pyarrow).

In-process runners hand a stage's elements to one thread; the k-means fit of each class
and the merge of each shard are independent and long (seconds), so running two or more
at once uses the other cores. Results come out as they complete, in any order (their
consumers are keyed: a side-input dict, a list finalize indexes by destination). At most
`threads` elements are in flight, so memory stays that of `threads` elements.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import apache_beam as beam

from pipelines.reading import windowed
from transforms.cores import worker_threads


class ThreadedMap(beam.DoFn):
    """`fn(element, *side_inputs)` for each element, on `threads` threads; one output each.

    An exception in `fn` fails the bundle as it would in a plain Map (re-raised here).
    """

    def __init__(self, fn, threads: int | None = None):
        self.fn = fn
        self.threads = threads

    def setup(self):
        self.width = self.threads or worker_threads()
        self.pool = ThreadPoolExecutor(self.width)

    def start_bundle(self):
        self.pending: deque[Future] = deque()

    def process(self, element, *side):
        self.pending.append(self.pool.submit(self.fn, element, *side))
        while len(self.pending) > self.width or (self.pending and self.pending[0].done()):
            yield self.pending.popleft().result()

    def finish_bundle(self):
        while self.pending:
            yield windowed(self.pending.popleft().result())

    def teardown(self):
        self.pool.shutdown(wait=True, cancel_futures=True)
