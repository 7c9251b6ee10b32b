"""Pass 4 of pipelines.balance: every record to its place, as fragments for the merge.

Train records are copied by their group's rule (exact quotas; see transforms/selection.py):
most rows know their copy count at once, the few in a group's boundary bucket are
gathered (many groups to a part, `ClassPlan.boundary_part`) and settled per group by a sort. Val and test records go out as they are.
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
    CachePass's work does: the fragments written, as (merge key, [(dest, fragment), ...])
    per merge task (`by_merge_task`), and ("boundary", (part, rows)): the rows of the boundary
    buckets of the groups in each part (`ClassPlan.boundary_part`: with thousands of classes,
    one Beam key a group would cost more than settling the groups), as one batch with their
    cluster, to be settled per group. `unit`: the cache file's
    name, from which the fragments are named."""
    seed = rule.seed
    writer = FragmentWriter(staging, unit=unit)
    boundary: dict[int, list] = {}  # part -> rows of boundary buckets (with their cluster), a batch per batch
    counts = {"records_holdout": 0, "records_train_input": 0, "records_written": 0}
    for good in batches:
        pending_rows: dict[int, list] = {}  # part -> (rows, their clusters) of its classes' boundary buckets
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
            if pending.any():
                pending_rows.setdefault(cp.boundary_part, []).append((train[pending], clusters[pending]))
        for part, groups in pending_rows.items():
            batch = records.take(good, np.concatenate([rows for rows, _ in groups]))
            batch["cluster"] = np.concatenate([c for _, c in groups]).astype(np.int32)
            boundary.setdefault(part, []).append(batch)
    return (by_merge_task(writer.flush(), plan.merge_key)
            + [beam.pvalue.TaggedOutput("boundary", (part, records.concat(boundary[part]))) for part in sorted(boundary)]
            ), counts


def by_merge_task(fragments, merge_key) -> list[tuple]:
    """Fragments written -> (merge key, [(dest, fragment), ...]) per merge task they feed
    (`merge_key(dest)`, plan.merge_key): one element per task and flush, not one per
    destination."""
    tasks: dict[tuple, list] = {}
    for dest, fragment, _ in fragments:
        tasks.setdefault(merge_key(dest), []).append((dest, fragment))
    return sorted(tasks.items())


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
    """All rows of the boundary buckets of one part's groups, settled group by group. A
    bundle's groups share one writer (files by size, not one
    per group); its files are named from their rows, so a retried bundle writes the same
    ones."""

    def __init__(self, seed: int, keep_embeddings: bool, staging: str):
        self.seed, self.keep_embeddings, self.staging = seed, keep_embeddings, staging
        self.written = Metrics.counter(NS, "records_written")

    def start_bundle(self):
        self.writer, self.plan = FragmentWriter(self.staging, unit="boundary"), None

    def finish_bundle(self):
        fragments = self.writer.flush()  # some only when process ran, so the plan is known
        for task in by_merge_task(fragments, self.plan.merge_key) if fragments else []:
            yield windowed(task)

    def process(self, item, plan):
        self.plan = plan
        _, batches = item
        rows = records.concat(list(batches))
        for label, in_class in records.group_rows(rows["label"]):
            for cluster in np.unique(rows["cluster"][in_class]):
                self.settle(records.take(rows, in_class[rows["cluster"][in_class] == cluster]), label, int(cluster))
        yield from by_merge_task(self.writer.drain(), plan.merge_key)

    def settle(self, batch: dict, label: str, cluster: int) -> None:
        """One group's boundary bucket: its rows sorted by (hash, id), the first `need` get the
        extra copy. Written in that order, whatever order the shuffle gave them in, so a
        retried bundle writes the same staging files (their names hash their rows)."""
        cp = self.plan.classes[label]
        u = hashing.decision(batch["key"], self.seed, hashing.COPIES)
        ids = batch["id"].astype(str)
        order = np.lexsort((ids, u))
        batch, u = records.take(batch, order), u[order]
        copies = selection.settle_boundary(u, ids[order], cp.rules[cluster])
        self.written.inc(int(copies.sum()))
        n = len(u)
        write_train(self.writer, batch, np.arange(n), copies, np.full(n, cluster), cp, self.seed, self.keep_embeddings)


class _WriteRejected(beam.DoFn):
    def __init__(self, staging: str):
        self.staging = staging

    def start_bundle(self):
        self.writer = FragmentWriter(self.staging)

    def process(self, bad):
        self.writer.add(REJECTED, bad)
        yield from by_merge_task(self.writer.drain(), tuple)  # its own merge task

    def finish_bundle(self):
        for task in by_merge_task(self.writer.flush(), tuple):
            yield windowed(task)


REJECTED = ("rejected", 0, 0)  # the rejected records' destination: one file, its own merge task


class Resample(beam.PTransform):
    """Pass 4's rest: (fragments and boundary rows from `resample`, rejected batches) ->
    (merge key, [(dest, fragment), ...]): the boundary rows settled per group, the rejected
    rows written."""

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
