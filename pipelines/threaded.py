"""A Map whose elements run a few at once: on threads of the worker (the k-means fit per
class: scikit-learn releases the GIL) or on the pass processes (the merge per shard, whose
TFRecord encoding is Python per record).

In-process runners hand a stage's elements to one thread; the k-means fit of each class
and the merge of each shard are independent and long (seconds), so running two or more
at once uses the other cores. Results come out in the order the elements came in
(pooled.InFlight), each once it and every earlier one are done; their consumers are keyed
anyway (a side-input dict, a list finalize indexes by destination). At most
`threads` (or `processes`) elements are in flight, so memory stays that of that many
elements.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import apache_beam as beam

from pipelines import pooled
from pipelines.reading import windowed
from transforms.cores import worker_threads


class ThreadedMap(beam.DoFn):
    """`fn(element, *side_inputs)` for each element, on `threads` threads, or with `processes`
    on the pass processes (pooled.pass_pool; `fn` must then pickle: a module's function);
    one output each.

    An exception in `fn` fails the bundle as it would in a plain Map (re-raised here). When
    a pass process dies, its elements and every later one run here (pooled.InFlight).
    """

    def __init__(self, fn, threads: int | None = None, processes: int = 0):
        self.fn = fn
        self.threads, self.processes = threads, processes

    def setup(self):
        width = self.processes or self.threads or worker_threads()
        pool = pooled.pass_pool(self.processes, create=False) if self.processes else None
        # threads: this DoFn's own (also where the driver made no pass processes)
        self.threads_pool = ThreadPoolExecutor(width) if pool is None else None
        self.calls = pooled.InFlight(self.fn, pool or self.threads_pool, width)

    def process(self, element, *side):
        yield from self.calls.add(element, side)

    def finish_bundle(self):
        for result in self.calls.drain():
            yield windowed(result)

    def teardown(self):
        if self.threads_pool is not None:  # the pass processes are the job's, shut down at its end
            self.threads_pool.shutdown(wait=True, cancel_futures=True)
