"""Pass 4 of pipelines.balance: every record to its place, as fragments for the merge.

Train records are copied by their group's rule (exact quotas; see transforms/selection.py):
most rows know their copy count at once, the few in a group's boundary bucket are
gathered per group and settled by a sort. Val and test records go out as they are.
Every copy's shard and its place in the shard come from hash(id, copy, seed); rows are
buffered per destination and flushed as fragment files (pipelines/outputs/fragments.py), which
the merge turns into the final shards.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from pipelines.inputs.reading import NS
from pipelines.outputs.fragments import FragmentWriter
from pipelines.parallel import windowed
from pipelines.passes.histograms import split_and_assign
from transforms import hashing, records, selection
from transforms.stats import TEST, VAL, HoldoutRule


def resample(batches, rule: HoldoutRule, keep_embeddings: bool, staging: str, models: dict, plan,
             unit: str | None = None):
    """Pass 4 over some valid batches (a cache file): copies of each train row by its group's
    rule, val and test rows as they are, into fragments. Returns (outputs, counters), as a
    CachePass's work does: the fragments written, and ("boundary", ((label, cluster), rows))
    for the rows of boundary buckets, which are settled per group. `unit`: the cache file's
    name, from which the fragments are named."""
    seed = rule.seed
    writer = FragmentWriter(staging, unit=unit)
    boundary = []
    counts = {"records_holdout": 0, "records_train_input": 0, "records_written": 0}
    for good in batches:
        for label, _, held, train, clusters in split_and_assign(good, models, rule):
            cp = plan.classes[label]
            counts["records_holdout"] += len(held[VAL]) + len(held[TEST])
            counts["records_train_input"] += len(train)
            write_heldout(writer, "val", good, held[VAL], cp.index, plan, seed, keep_embeddings)
            write_heldout(writer, "test", good, held[TEST], cp.index, plan, seed, keep_embeddings)
            u = hashing.decision(good["key"][train], seed, hashing.COPIES)
            copies = np.zeros(len(train), np.int64)
            pending = np.zeros(len(train), bool)
            for c in np.unique(clusters):
                in_c = clusters == c
                copies[in_c], pending[in_c] = selection.copies_by_rule(u[in_c], cp.rules[int(c)])
            done = ~pending
            counts["records_written"] += int(copies[done].sum())
            write_train(writer, good, train[done], copies[done], clusters[done], cp, seed, keep_embeddings)
            for c in np.unique(clusters[pending]):
                rows = train[pending & (clusters == c)]
                boundary.append(beam.pvalue.TaggedOutput("boundary", ((label, int(c)), records.take(good, rows))))
    return writer.flush() + boundary, counts


def write_train(writer, good, rows, copies, clusters, cp, seed: int, keep_embeddings: bool):
    """Expands rows into their copies and sends each copy to its shard.

    A copy's shard and its place in the shard come from hash(id, copy, seed).
    """
    rep = np.repeat(np.arange(len(rows)), copies)
    if not len(rep):
        return
    copy_index = np.arange(len(rep)) - np.repeat(np.cumsum(copies) - copies, copies)
    src = rows[rep]
    base = hashing.decision(good["key"][src], seed, hashing.SHARD)
    order = hashing.mix64(base + copy_index.astype(np.uint64))
    shard = (order % np.uint64(cp.shards)).astype(np.int64)
    writer.add_split("train", cp.index, shard, {
        "id": (good["id"], src), "order": order, "label": np.full(len(src), cp.index, np.int32),
        "cluster": clusters[rep].astype(np.int32), **payload_columns(good, src, keep_embeddings)})


def write_heldout(writer, split: str, good, rows, index, plan, seed: int, keep_embeddings: bool):
    """Rows of one class held out to `split` (val or test), as they are: one copy, cluster -1."""
    if not len(rows):
        return
    order = hashing.decision(good["key"][rows], seed, hashing.SHARD)
    shard = (order % np.uint64(plan.held_shards(split))).astype(np.int64)
    writer.add_split(split, 0, shard, {
        "id": (good["id"], rows), "order": order, "label": np.full(len(rows), index, np.int32),
        "cluster": np.full(len(rows), -1, np.int32), **payload_columns(good, rows, keep_embeddings)})


def payload_columns(good: dict, rows: np.ndarray, keep_embeddings: bool) -> dict:
    """What a shard row carries besides id, label and cluster (the record contract: docs/ARCHITECTURE.md),
    as (column, rows) pairs that the writer gathers once, in shard order."""
    if "image" not in good:
        return {"features": (good["features"], rows)}
    cols = {"image": (good["image"], rows), "format": (good["format"], rows)}
    if keep_embeddings:
        cols["embedding"] = (good["features"], rows)
    return cols


class _SettleBoundary(beam.DoFn):
    """All rows of one group's boundary bucket: sorted, the first `need` get the extra copy.
    A bundle's groups share one writer (files by size, not one per group); its files are
    named from their rows, so a retried bundle writes the same ones."""

    def __init__(self, seed: int, keep_embeddings: bool, staging: str):
        self.seed, self.keep_embeddings, self.staging = seed, keep_embeddings, staging
        self.written = Metrics.counter(NS, "records_written")

    def start_bundle(self):
        self.writer = FragmentWriter(self.staging, unit="boundary")

    def finish_bundle(self):
        for fragment in self.writer.flush():
            yield windowed(fragment)

    def process(self, item, plan):
        (label, cluster), batches = item
        batch = records.concat(list(batches))
        cp = plan.classes[label]
        rule = cp.rules[cluster]
        u = hashing.decision(batch["key"], self.seed, hashing.COPIES)
        copies = selection.settle_boundary(u, batch["id"].astype(str), rule)
        self.written.inc(int(copies.sum()))
        n = len(u)
        write_train(self.writer, batch, np.arange(n), copies, np.full(n, cluster), cp, self.seed,
                    self.keep_embeddings)
        yield from self.writer.drain()


class _WriteRejected(beam.DoFn):
    def __init__(self, staging: str):
        self.staging = staging

    def start_bundle(self):
        self.writer = FragmentWriter(self.staging)

    def process(self, bad):
        self.writer.add(("rejected", 0, 0), bad)
        yield from self.writer.drain()

    def finish_bundle(self):
        for fragment in self.writer.flush():
            yield windowed(fragment)


class Resample(beam.PTransform):
    """Pass 4's rest: (fragments and boundary rows from `resample`, rejected batches) -> fragments
    (dest, path, rows): the boundary rows settled per group, the rejected rows written."""

    def __init__(self, seed: int, keep_embeddings: bool, staging: str, plan):
        super().__init__()
        self.seed, self.keep_embeddings, self.staging, self.plan = seed, keep_embeddings, staging, plan

    def expand(self, pcolls):
        fragments, boundary, rejected = pcolls
        settled = (
            boundary
            | "GatherBoundary" >> beam.GroupByKey()
            | "SettleBoundary" >> beam.ParDo(_SettleBoundary(self.seed, self.keep_embeddings, self.staging), self.plan)
        )
        bad = rejected | "WriteRejected" >> beam.ParDo(_WriteRejected(self.staging))
        return (fragments, settled, bad) | "AllFragments" >> beam.Flatten()
