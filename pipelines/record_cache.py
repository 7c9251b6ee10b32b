"""Pass 1's records, kept for the later passes: each input record is read, checked and
hashed once.

Pass 1 writes the valid records (id, key, label, payload, clustering vector) and the
rejected ones (with their reasons) as Arrow IPC files into OUT/.staging/RUN/cache/,
per bundle in chunks of at most shards.FLUSH_BYTES, so memory stays bounded. Passes 2
to 4 read those files instead of the input: for images that saves decoding (and the
embedding model); for vectors it saves parsing, validating and hashing, which cost
several times what reading an uncompressed Arrow file does (docs/BENCHMARKS.md). The
cache holds about one uncompressed copy of the valid input on the staging file system
until the run ends (docs/SCALING.md).

Every decision downstream is a function of a record's key, so the output does not
depend on how the cache files cut the records into batches.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from concurrent.futures.process import BrokenProcessPool

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from pipelines import shards
from pipelines.reading import NS, ReadStage, windowed
from transforms.cores import process_pool

log = logging.getLogger("pipelines.balance")

# The good batch's columns other than the vector, in this order (image corpora add image, format).
FIELDS = {"id": pa.string(), "key": pa.uint64(), "label": pa.string(), "image": pa.binary(),
          "format": pa.string()}


def cache_table(good: dict) -> pa.Table:
    names = [k for k in FIELDS if k in good]
    cols = [pa.array(good[k], FIELDS[k]) for k in names]
    return pa.Table.from_arrays(cols + [shards.vector_array(good["features"])], names=names + ["features"])


# What passes 2 and 3 read of a valid record: they hash, group and cluster, nothing more.
ANALYSIS_COLUMNS = ("key", "label", "features")


def good_from_table(batch: pa.RecordBatch, columns=None) -> dict:
    """A cached batch as the columns of a good batch: all, or only `columns` (the rest,
    image bytes above all, never become Python objects)."""
    if columns:
        batch = batch.select(list(columns))
    feats = batch.column("features")
    x = feats.flatten().to_numpy(zero_copy_only=False).reshape(len(batch), feats.type.list_size)
    out = {k: batch.column(k).to_numpy(zero_copy_only=False).astype(object) for k in batch.schema.names
           if k not in ("key", "features")}
    out["key"] = batch.column("key").to_numpy()
    out["features"] = np.ascontiguousarray(x, np.float32)
    return out


class _WriteCache(beam.DoFn):
    """Writes batches (valid or rejected) into cache files; emits (kind, path)."""

    def __init__(self, folder: str, kind: str):
        self.folder, self.kind = folder, kind

    def start_bundle(self):
        self.tables, self.bytes = [], 0

    def process(self, batch):
        table = cache_table(batch) if self.kind == "good" else shards.rejected_table(batch)
        self.tables.append(table)
        self.bytes += table.nbytes
        if self.bytes >= shards.FLUSH_BYTES:
            yield self._flush()

    def finish_bundle(self):
        if self.tables:
            yield windowed(self._flush())

    def _flush(self):
        path = f"{self.folder}/{self.kind}-{uuid.uuid4().hex}.arrow"
        shards.write_ipc(path, self.tables)
        self.tables, self.bytes = [], 0
        return self.kind, path


class WriteCache(beam.PTransform):
    """(valid batches, rejected batches) -> the cache's index: (kind, path) per file written."""

    def __init__(self, staging: str):
        super().__init__()
        self.folder = f"{staging}/cache"

    def expand(self, pcolls):
        good, rejected = pcolls
        return (
            (good | "CacheValid" >> beam.ParDo(_WriteCache(self.folder, "good")),
             rejected | "CacheRejected" >> beam.ParDo(_WriteCache(self.folder, "rejected")))
            | "CacheIndex" >> beam.Flatten()
        )


def good_batches(path: str, columns=None):
    """The valid records of one cache file, batch by batch (see good_from_table)."""
    with shards.open_read(path) as f:
        for batch in pa.ipc.open_stream(f):
            yield good_from_table(batch, columns)


def rejected_batches(path: str):
    """The rejected records of one cache file, batch by batch."""
    with shards.open_read(path) as f:
        for batch in pa.ipc.open_stream(f):
            cols = {k: batch.column(k).to_numpy(zero_copy_only=False) for k in batch.schema.names}
            yield {k: (v.astype(object) if k != "row" else v) for k, v in cols.items()}


def run_on_file(path: str, columns, work, side: tuple):
    """`work(batches, *side)` over one file of valid records -> (records read, outputs, counters).

    What a pass does with a file runs here, in a pass process or in the worker itself;
    only its results (small: fragment paths, samples, histograms, counts) travel back.
    """
    seen = [0]

    def batches():
        for good in good_batches(path, columns):
            seen[0] += len(good["key"])
            yield good

    outputs, counters = work(batches(), *side)
    return seen[0], outputs, counters


def pass_pool(processes: int):
    """The forked processes that run the passes over the cache, a file each at a time."""
    return process_pool(processes, _one_blas_thread)


def _one_blas_thread() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")  # the processes are the parallelism


class _CacheFiles(ReadStage):
    """Each cache file of valid records through `work`, on `processes` forked processes
    (several files at once) or here; rejected files are read here, as they are few."""

    def __init__(self, name: str, progress_seconds: float, count: bool, columns, work, processes: int):
        super().__init__(name, progress_seconds, count)
        self.columns, self.work, self.processes = columns, work, processes

    def setup(self):
        super().setup()
        self.pool = pass_pool(self.processes) if self.processes else None

    def start_bundle(self):
        self.pending: deque = deque()  # (path, future) in submission order

    def process(self, item, *side):
        kind, path = item
        if kind != "good":
            for bad in rejected_batches(path):
                yield from self.emit(len(bad["row"]), None, bad)
            return
        if self.pool is None:
            yield from self._results(run_on_file(path, self.columns, self.work, side))
            return
        self.pending.append((path, side, self.pool.submit(run_on_file, path, self.columns, self.work, side)))
        while len(self.pending) > self.processes or (self.pending and self.pending[0][2].done()):
            yield from self._next()

    def finish_bundle(self):
        while self.pending:
            for out in self._next():
                if isinstance(out, beam.pvalue.TaggedOutput):
                    yield beam.pvalue.TaggedOutput(out.tag, windowed(out.value))
                else:
                    yield windowed(out)

    def _next(self):
        path, side, future = self.pending.popleft()
        try:
            result = future.result()
        except BrokenProcessPool:  # a pass process died (killed, out of memory): go on here
            log.warning("a pass process died; the files left are read in this process")
            self.pool = None
            result = run_on_file(path, self.columns, self.work, side)
        return self._results(result)

    def _results(self, result):
        n, outputs, counters = result
        yield from self.emit(n, None, None)
        for name, value in counters.items():
            Metrics.counter(NS, name).inc(value)
        yield from outputs


class CachePass(beam.PTransform):
    """A pass after the first: `work(batches, *side)` on each cached file of valid records,
    returning (outputs, counters): elements for the main output (or TaggedOutputs), and
    Beam counter increments. -> (outputs, rejected batches, records read per file).

    With `processes` (the local runners, see --processes) the files go to a pool of forked
    processes, so the pass's Python runs on every core; else `work` runs in the worker.
    `columns`: the valid records' columns the pass uses (None: all of them); `tags`: the
    tagged outputs `work` emits besides the main one.
    """

    def __init__(self, name: str, progress_seconds: float, index, work, *side, count: bool = False, columns=None,
                 processes: int = 0, tags=()):
        super().__init__()
        self.name, self.progress_seconds, self.index, self.count, self.columns = (name, progress_seconds, index,
                                                                                 count, columns)
        self.work, self.side, self.processes, self.tags = work, side, processes, tuple(tags)

    def expand(self, pbegin):
        out = (
            pbegin
            | "Start" >> beam.Create([None])
            | "CacheFiles" >> beam.FlatMap(lambda _, idx: sorted(idx), self.index)
            | "Spread" >> beam.Reshuffle()
            | "Work" >> beam.ParDo(_CacheFiles(self.name, self.progress_seconds, self.count, self.columns, self.work,
                                               self.processes), *self.side)
            .with_outputs("rejected", "counted", *self.tags, main="out")
        )
        return out
