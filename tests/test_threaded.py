"""ThreadedMap: every element once, side inputs, errors surface, elements really overlap."""

from __future__ import annotations

import threading
import time

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from pipelines.threaded import ThreadedMap


class Overlap:
    """Records how many calls run at once; each call waits a little so that they can."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = self.most = 0

    def __call__(self, x, offset):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.05)
        with self.lock:
            self.now -= 1
        return x + offset


def test_every_element_once_with_side_inputs_and_at_most_threads_at_once():
    fn = Overlap()
    with beam.Pipeline(runner="FnApiRunner") as p:
        offset = p | "Offset" >> beam.Create([1000])
        out = (p | beam.Create(list(range(40)))
               | beam.ParDo(ThreadedMap(fn, threads=3), beam.pvalue.AsSingleton(offset)))
        assert_that(out, equal_to([x + 1000 for x in range(40)]))
    # FnApiRunner pickles the DoFn, so the counter that ran is a copy: check it in process.
    fn = Overlap()
    dofn = ThreadedMap(fn, threads=3)
    dofn.setup()
    dofn.start_bundle()
    got = [y for x in range(12) for y in dofn.process(x, 0)] + [w.value for w in dofn.finish_bundle()]
    dofn.teardown()
    assert sorted(got) == list(range(12))
    assert fn.most == 3  # the calls overlapped, never more than the threads


def test_an_error_in_one_element_fails_the_job():
    def boom(x):
        if x == 7:
            raise ValueError("element 7 is bad")
        return x

    with pytest.raises(Exception, match="element 7 is bad"):
        with beam.Pipeline(runner="FnApiRunner") as p:
            _ = p | beam.Create(list(range(20))) | beam.ParDo(ThreadedMap(boom, threads=2))
