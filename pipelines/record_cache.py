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

import uuid

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pipelines import shards
from pipelines.reading import ReadStage, windowed

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


class _ReadCacheFile(ReadStage):
    def __init__(self, name: str, progress_seconds: float, count: bool, columns):
        super().__init__(name, progress_seconds, count)
        self.columns = columns

    def process(self, item):
        kind, path = item
        with shards.open_read(path) as f:
            for batch in pa.ipc.open_stream(f):
                if kind == "good":
                    yield from self.emit(batch.num_rows, good_from_table(batch, self.columns), None)
                else:
                    cols = {k: batch.column(k).to_numpy(zero_copy_only=False) for k in batch.schema.names}
                    cols = {k: (v.astype(object) if k != "row" else v) for k, v in cols.items()}
                    yield from self.emit(batch.num_rows, None, cols)


class ReadCache(beam.PTransform):
    """The passes after the first: the cached records -> (good, rejected, records read per batch).

    `columns`: the valid records' columns the pass uses (None: all of them).
    """

    def __init__(self, progress_seconds: float, index, count: bool = False, name: str = "read", columns=None):
        super().__init__()
        self.progress_seconds, self.index, self.count, self.name = progress_seconds, index, count, name
        self.columns = columns

    def expand(self, pbegin):
        out = (
            pbegin
            | "Start" >> beam.Create([None])
            | "CacheFiles" >> beam.FlatMap(lambda _, idx: sorted(idx), self.index)
            | "Spread" >> beam.Reshuffle()
            | "ReadCache" >> beam.ParDo(_ReadCacheFile(self.name, self.progress_seconds, self.count, self.columns))
            .with_outputs("rejected", "counted", main="good")
        )
        return out.good, out.rejected, out.counted
