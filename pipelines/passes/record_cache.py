"""Pass 1's records, kept for the later passes: each input record is read, checked and
hashed once.

Pass 1 writes the valid records (id, key, label, payload, clustering vector) and the
rejected ones (with their reasons) as Arrow IPC files into OUT/.staging/RUN/cache/,
per unit of input (or bundle) in chunks of at most FLUSH_BYTES, so memory stays
bounded. Passes 2
to 4 read those files instead of the input: for images that saves decoding (and the
embedding model); for vectors it saves parsing, validating and hashing, which cost
several times what reading an uncompressed Arrow file does (docs/BENCHMARKS.md). The
cache holds about one uncompressed copy of the valid input on the staging file system
until the run ends (docs/SCALING.md).

Every decision downstream is a function of a record's key, so the output does not
depend on how the cache files cut the records into batches.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pipelines.inputs.reading import PassWork, Result, unreadable
from pipelines.outputs.fragments import FLUSH_BYTES, stable_name, vector_array, write_ipc
from pipelines.parallel import windowed
from pipelines.passes.counting import Summaries
from transforms import sources, storage
from transforms.records import rejected_table
from transforms.stats import HoldoutRule

# The good batch's columns other than the vector, in this order (image corpora add image, format).
FIELDS = {"id": pa.string(), "key": pa.uint64(), "label": pa.string(), "image": pa.binary(),
          "format": pa.string()}


def cache_table(good: dict) -> pa.Table:
    names = [k for k in FIELDS if k in good]
    cols = [pa.array(good[k], FIELDS[k]) for k in names]
    return pa.Table.from_arrays(cols + [vector_array(good["features"])], names=names + ["features"])


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


class CacheWriter:
    """Batches (valid or rejected) into cache files of at most about FLUSH_BYTES each,
    named by stable_name (from `unit`, the file's place and its rows) and written
    atomically: a retried or recomputed unit writes the same files."""

    def __init__(self, folder: str, unit=None):
        self.folder, self.unit, self.flushes = folder, unit, 0
        self.tables: dict[str, list[pa.Table]] = {"good": [], "rejected": []}
        self.bytes = 0
        self.written: list[tuple[str, str]] = []  # (kind, path)

    def add(self, kind: str, batch: dict) -> None:
        table = cache_table(batch) if kind == "good" else rejected_table(batch)
        self.tables[kind].append(table)
        self.bytes += table.nbytes
        if self.bytes >= FLUSH_BYTES:
            self._write()

    def drain(self) -> list[tuple[str, str]]:
        """The files written since the last drain."""
        done, self.written = self.written, []
        return done

    def flush(self) -> list[tuple[str, str]]:
        self._write()
        return self.drain()

    def _write(self) -> None:
        for kind, tables in self.tables.items():
            if tables:
                path = f"{self.folder}/{kind}-{stable_name(self.unit, self.flushes, tables)}.arrow"
                write_ipc(path, tables, random_access=False)
                self.written.append((kind, path))
                tables.clear()
        self.bytes = 0
        self.flushes += 1


class _WriteCache(beam.DoFn):
    """Writes batches (valid or rejected) into cache files; emits (kind, path)."""

    def __init__(self, folder: str, kind: str):
        self.folder, self.kind = folder, kind

    def start_bundle(self):
        self.writer = CacheWriter(self.folder)

    def process(self, batch):
        self.writer.add(self.kind, batch)
        yield from self.writer.drain()

    def finish_bundle(self):
        for written in self.writer.flush():
            yield windowed(written)


class WriteCache(beam.PTransform):
    """(valid batches, rejected batches) -> the cache's index: (kind, path) per file written.
    For images embedded by InceptionV3, whose pass 1 has a RunInference stage; every other
    corpus caches each unit as it reads it (`read_into_cache`)."""

    def __init__(self, staging: str):
        super().__init__()
        self.folder = cache_folder(staging)

    def expand(self, pcolls):
        good, rejected = pcolls
        return (
            (good | "CacheValid" >> beam.ParDo(_WriteCache(self.folder, "good")),
             rejected | "CacheRejected" >> beam.ParDo(_WriteCache(self.folder, "rejected")))
            | "CacheIndex" >> beam.Flatten()
        )


def cache_folder(staging: str) -> str:
    return f"{staging}/cache"


def read_into_cache(unit, checked, folder: str, rule: HoldoutRule, keep_embeddings: bool, dim: int) -> Result:
    """Pass 1 over one unit: `checked(unit, dim)` gives its batches read and checked (vectors:
    reading.CheckedVectors; images, decoded and vectorised: image_stages.CheckedImages) as
    (records, valid, rejected); they are written to the cache and summarised
    (Summaries: per-class partials, id hashes). Outputs ("cache", (kind, path)) per
    file written, and the summaries.

    A file that cannot be read fails the job naming it, or (--reject_unreadable_files)
    becomes one rejected entry, the records read before the damage kept (unit_batches).
    """
    writer = CacheWriter(folder, unit)
    summaries = Summaries(rule, keep_embeddings)
    read = rejected = 0
    try:
        for n, good, bad in checked(unit, dim):  # either of good and bad is None when it has no rows
            read += n
            if bad is not None:
                rejected += len(bad["row"])
                writer.add("rejected", bad)
            if good is not None:
                writer.add("good", good)
                summaries.add(good)
    except sources.UnreadableFile as e:
        bad = unreadable(e, unit[0], checked.spec.reject_unreadable_files)
        read += 1
        rejected += 1
        writer.add("rejected", bad)
    outputs = [beam.pvalue.TaggedOutput("cache", written) for written in writer.flush()]
    return Result(read, rejected, outputs + summaries.outputs(), {})


class ReadIntoCache(beam.PTransform):
    """Pass 1: units -> `read_into_cache` on each (on the job's processes, unless not
    `use_processes`) ->
    outputs "cache" (the cache's index), "partials", "ids" (Summaries) and "counted"
    (records read per unit)."""

    def __init__(self, checked, staging: str, rule: HoldoutRule, keep_embeddings: bool, dim, name: str,
                 use_processes: bool = True):
        super().__init__()
        self.checked, self.folder, self.rule, self.keep_embeddings, self.dim = (checked, cache_folder(staging), rule,
                                                                                keep_embeddings, dim)
        self.name, self.use_processes = name, use_processes

    def expand(self, units):
        return units | "ReadIntoCache" >> beam.ParDo(
            PassWork(self.name, self.checked.spec.progress_seconds, False, read_into_cache, self.use_processes),
            self.checked, self.folder, self.rule, self.keep_embeddings, self.dim,
        ).with_outputs("cache", "partials", "ids", "counted", main="none")


def good_batches(path: str, columns=None):
    """The valid records of one cache file as one batch (see good_from_table): the passes'
    work per class is then done once per file, not once per batch it was written in (with
    thousands of classes a batch holds a row or two of each). A file is at most about
    FLUSH_BYTES."""
    with storage.open_read(path) as f:
        table = pa.ipc.open_stream(f).read_all()
    if table.num_rows:
        yield good_from_table(table.combine_chunks().to_batches()[0], columns)


def rejected_batches(path: str):
    """The rejected records of one cache file, batch by batch."""
    with storage.open_read(path) as f:
        for batch in pa.ipc.open_stream(f):
            cols = {k: batch.column(k).to_numpy(zero_copy_only=False) for k in batch.schema.names}
            yield {k: (v.astype(object) if k != "row" else v) for k, v in cols.items()}


def over_file(item, columns, work, *side) -> Result:
    """A pass after the first over one cache file: `work(batches, *side, unit=NAME)` ->
    (outputs, counters) on a file of valid records (NAME: the cache file's, from which the
    files the pass writes are named); a file of rejected ones is passed on as
    "rejected" batches."""
    kind, path = item
    if kind != "good":
        bad = list(rejected_batches(path))
        n = sum(len(b["row"]) for b in bad)
        return Result(n, n, [beam.pvalue.TaggedOutput("rejected", b) for b in bad], {})
    seen = [0]

    def batches():
        for good in good_batches(path, columns):
            seen[0] += len(good["key"])
            yield good

    todo = batches()
    outputs, counters = work(todo, *side, unit=path.rsplit("/", 1)[-1])
    for _ in todo:  # a pass that stopped early still read (and counts) the whole file
        pass
    return Result(seen[0], 0, outputs, counters)


class CachePass(beam.PTransform):
    """A pass after the first: `work(batches, *side)` on each cached file of valid records,
    returning (outputs, counters): elements for the main output (or TaggedOutputs), and
    Beam counter increments. -> outputs "out", `tags`, "rejected" (the rejected records'
    batches) and "counted" (records read per file).

    Where the job has processes (the local runners, see --processes) the files go to them
    (pipelines/parallel.py), so the pass's Python runs on every core; else `work` runs in
    the worker. `columns`: the valid records' columns the pass uses (None: all of them).
    """

    def __init__(self, name: str, progress_seconds: float, index, work, *side, count: bool = False, columns=None,
                 tags=()):
        super().__init__()
        self.name, self.progress_seconds, self.index, self.count, self.columns = (name, progress_seconds, index,
                                                                                 count, columns)
        self.work, self.side, self.tags = work, side, tuple(tags)

    def expand(self, pbegin):
        return (
            pbegin
            | "Start" >> beam.Create([None])
            | "CacheFiles" >> beam.FlatMap(lambda _, idx: sorted(idx), self.index)
            | "Spread" >> beam.Reshuffle()
            | "Work" >> beam.ParDo(PassWork(self.name, self.progress_seconds, self.count, over_file),
                                   self.columns, self.work, *self.side)
            .with_outputs("rejected", "counted", *self.tags, main="out")
        )
