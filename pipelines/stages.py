"""The Beam stages of pipelines.balance: thin wrappers around transforms/.

The job makes four passes over the input (three for the random strategies, which
need no k-means) and keeps no record in between, so its memory does not grow with
the corpus on any runner (a runner that buffers a PCollection between stages, like
the FnApiRunner, never holds the data). What flows from one pass to the next is
small, and travels as side inputs:

  pass 1  ReadCorpus -> ClassCounts          count, train size, hold-out top per class
  pass 2  ReadCorpus -> ClassCentroids       candidates under a class-size-aware hash
          threshold -> bottom-m sample -> FitKMeans (per class, parallel) -> centroids
  pass 3  ReadCorpus -> hold-out, AssignClusters -> bucket histograms per
          (class, cluster)  -> Plan          quotas and copy rules   -> plan
  pass 4  ReadCorpus -> Resample -> fragments; boundary buckets -> GroupByKey ->
          Settle -> fragments;  MergeShards -> Finalize (manifest.json last)
"""

from __future__ import annotations

import dataclasses
import logging
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io import fileio
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from pipelines import shards, sources
from transforms import hashing, kmeans, records, selection
from transforms.sampling import BottomM
from transforms.stats import TEST, TRAIN, VAL, ClassStats, HoldoutRule

NS = "balance"
log = logging.getLogger("pipelines.balance")


def _windowed(value):
    return GlobalWindows.windowed_value(value)


# ---------------------------------------------------------------- reading

class Progress:
    """Records one read stage has read on this worker, logged every `seconds` (0: every batch).

    Plain logging from inside the read stage: it works the same on every runner (the
    local ones print it, Dataflow and Flink collect it with the worker logs), and costs
    one clock read per batch. A global running total would need the runner's metrics
    while the job runs, which the local runners only report at the end.
    """

    def __init__(self, name: str, seconds: float):
        self.name, self.seconds = name, seconds
        self.records = self.logged = 0
        self.last = time.monotonic()

    def add(self, n: int) -> None:
        self.records += n
        now = time.monotonic()
        if now - self.last >= self.seconds:
            rate = (self.records - self.logged) / max(now - self.last, 1e-9)
            log.info("%s: %s records read so far on this worker (%s/s)", self.name, f"{self.records:,}",
                     f"{rate:,.0f}")
            self.last, self.logged = now, self.records


class _ReadValid(beam.DoFn):
    """Reads one unit (row group or file) and validates it, batch by batch.

    Every batch also yields its record count on "counted" (one small int per batch):
    the pass's total, logged when the pass is done, and checked by the final pass.
    """

    def __init__(self, cfg, count: bool, name: str = "read"):
        self.cfg, self.count, self.name = cfg, count, name
        self.read = Metrics.counter(NS, "records_read")
        self.rejected = Metrics.counter(NS, "records_rejected")
        self.files_rejected = Metrics.counter(NS, "files_rejected")

    def setup(self):
        self.progress = Progress(self.name, self.cfg.progress_seconds)

    def process(self, unit, dim):
        try:
            for raw in unit_batches(unit, self.cfg, sources.read_unit):
                good, bad = records.validate(raw, dim)
                n = len(raw["row"])
                self.progress.add(n)
                yield beam.pvalue.TaggedOutput("counted", n)
                if self.count:
                    self.read.inc(n)
                if bad is not None:
                    if self.count:
                        self.rejected.inc(len(bad["row"]))
                    yield beam.pvalue.TaggedOutput("rejected", bad)
                if good is not None:
                    yield good
        except sources.UnreadableFile as e:
            rejected = unreadable(e, unit, self.cfg)
            if self.count:
                self.read.inc(1)
                self.rejected.inc(1)
                self.files_rejected.inc(1)
            self.progress.add(1)
            yield beam.pvalue.TaggedOutput("counted", 1)
            yield rejected


def unit_batches(unit, cfg, read):
    """Raw batches of a unit from `read(unit, cfg)`. With --reject_unreadable_files, when the
    unit fails part-way the records before the damage are read again one at a time (so what
    is kept does not depend on --batch_size) and the UnreadableFile raised at the end says,
    in `.done`, how many records were read."""
    done = 0
    try:
        for raw in read(unit, cfg):
            done += len(raw["row"])
            yield raw
    except sources.UnreadableFile as e:
        if cfg.reject_unreadable_files:
            seen = 0
            try:
                for raw in read(unit, dataclasses.replace(cfg, batch_size=1, image_batch_size=1)):
                    seen += len(raw["row"])
                    if seen > done:
                        done = seen
                        yield raw
            except sources.UnreadableFile:
                pass
            e.done = done
        raise


def unreadable(e: Exception, unit, cfg):
    """An unreadable file: fails the job naming it, or (with the flag) one rejected entry.

    When records of the unit were read before the damage (`e.done`, see unit_batches),
    they are kept, and the entry stands for the rest of the file.
    """
    done = getattr(e, "done", 0)
    if not cfg.reject_unreadable_files:
        raise sources.UnreadableFile(
            f"{e}. Fix or remove the file, or pass --reject_unreadable_files to reject it and go on."
        ) from e
    what = f"unreadable after its first {done} records (those were kept)" if done else "unreadable file"
    return beam.pvalue.TaggedOutput("rejected", records.rejected_file(unit[0], f"{what}: {e}"))


class _LengthHistogram(beam.DoFn):
    def __init__(self, cfg):
        self.cfg = cfg

    def process(self, unit):
        try:
            for raw in unit_batches(unit, self.cfg, sources.read_unit):
                lengths = raw["lengths"][raw["lengths"] >= 0]
                values, counts = np.unique(lengths, return_counts=True)
                yield dict(zip(values.tolist(), counts.tolist(), strict=True))
        except sources.UnreadableFile as e:
            unreadable(e, unit, self.cfg)  # fails the job naming the file, unless rejected later


def units_of_files(pbegin, cfg):
    """Matched files -> units (row groups, whole files), spread over workers."""
    return (
        pbegin
        | "Pattern" >> beam.Create([cfg.input])
        | "Match" >> fileio.MatchAll()
        | "Units" >> beam.FlatMap(lambda m, fmt: sources.list_units(m.path, fmt), cfg.input_format)
        | "Spread" >> beam.Reshuffle()
    )


class ReadCorpus(beam.PTransform):
    """Input files -> (valid batches, rejected batches, records read per batch).

    `count=True` (the job's last pass) also counts the records in the Beam counters,
    so that they count each record once. `name` labels the progress lines.
    """

    def __init__(self, cfg, dim, count: bool = False, name: str = "read"):
        super().__init__()
        self.cfg, self.dim, self.count, self.name = cfg, dim, count, name

    def expand(self, pbegin):
        out = units_of_files(pbegin, self.cfg) | "ReadValid" >> beam.ParDo(
            _ReadValid(self.cfg, self.count, self.name), self.dim
        ).with_outputs("rejected", "counted", main="good")
        return out.good, out.rejected, out.counted


def _log_done(total: int, name: str) -> int:
    log.info("%s: done, %s records read", name, f"{total:,}")
    return total


class PassDone(beam.PTransform):
    """Records read per batch -> the pass's total, logged once the pass has read everything."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def expand(self, counted):
        return (
            counted
            | "Total" >> beam.CombineGlobally(sum)
            | "Log" >> beam.Map(_log_done, self.name)
        )


def _sum_dicts(dicts):
    total: dict = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + v
    return total


def _mode(histogram: dict) -> int:
    if not histogram:
        raise ValueError("The input has no records with features (it is empty, or no row has the "
                         "feature column): check --input and --feature_column.")
    best = max(histogram.values())
    return min(k for k, v in histogram.items() if v == best)  # ties: the shorter length


class FeatureDimension(beam.PTransform):
    """The most common vector length in the corpus (a global statistic)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg

    def expand(self, pbegin):
        return (
            units_of_files(pbegin, self.cfg)
            | "Lengths" >> beam.ParDo(_LengthHistogram(self.cfg))
            | "Sum" >> beam.CombineGlobally(_sum_dicts)
            | "Mode" >> beam.Map(_mode)
        )


# ---------------------------------------------------------------- pass 1: counts

class _ClassPartials(beam.DoFn):
    def __init__(self, rule: HoldoutRule, keep_embeddings: bool):
        self.rule, self.keep_embeddings = rule, keep_embeddings

    def process(self, good, dim):
        for label, rows in records.group_rows(good["label"]):
            stats = ClassStats(self.rule).add(good["key"][rows], nbytes=payload_bytes(good, rows, self.keep_embeddings))
            yield label, stats


class MergeableFn(beam.CombineFn):
    """Combines elements that are themselves accumulators with a merge() (ClassStats, BottomM)."""

    def create_accumulator(self):
        return None

    def add_input(self, acc, partial):
        return partial if acc is None else acc.merge(partial)

    def merge_accumulators(self, accs):
        out = None
        for a in accs:
            if a is not None:
                out = a if out is None else out.merge(a)
        return out


class _ClassStatsFn(MergeableFn):
    def extract_output(self, acc):
        s = acc.extract()
        return {"count": s.count, "train": s.train, "val": s.val, "test": s.test, "max_hold": s.max_hold,
                "bytes": s.nbytes}


class ClassCounts(beam.PTransform):
    """Valid batches -> (label, {count, train, val, test, max_hold, bytes}): small, per class."""

    def __init__(self, rule: HoldoutRule, keep_embeddings: bool, dim):
        super().__init__()
        self.rule, self.keep_embeddings, self.dim = rule, keep_embeddings, dim

    def expand(self, good):
        return (
            good
            | "Partials" >> beam.ParDo(_ClassPartials(self.rule, self.keep_embeddings), self.dim)
            | "Combine" >> beam.CombinePerKey(_ClassStatsFn()).with_hot_key_fanout(8)
        )


ID_BUCKETS_BITS = 6  # 64 buckets: at 1e9 records about 125 MB of id hashes per bucket


def _id_hash_buckets(good: dict):
    """A batch's id hashes, split by their top bits: (bucket, hashes)."""
    h = hashing.hash_strings(pa.array(list(good["id"]), pa.string()))
    bucket = (h >> np.uint64(64 - ID_BUCKETS_BITS)).astype(np.int64)
    for b, rows in records.group_rows(bucket):
        yield int(b), h[rows]


def _repeats(item) -> int:
    _, parts = item
    h = np.concatenate(list(parts))
    return len(h) - len(np.unique(h))


class DuplicateIds(beam.PTransform):
    """Valid batches -> one int: records whose id (by its 64-bit hash) repeats another's.

    Ids can repeat across classes, so the count is global: id hashes travel in batches,
    bucketed by their top bits, and each bucket is counted with one np.unique.
    """

    def expand(self, good):
        return (
            good
            | "Buckets" >> beam.FlatMap(_id_hash_buckets)
            | "ByBucket" >> beam.GroupByKey()
            | "Repeats" >> beam.Map(_repeats)
            | "Total" >> beam.CombineGlobally(sum)
        )


# ---------------------------------------------------------------- pass 2: k-means samples

def sample_fraction(m: int, train: int) -> float:
    """Share of a class's train rows that must pass the sample hash so that >= m do.

    Expected 1.5 m + 10 sqrt(m) + 10 candidates: falling short of m is a > 10-sigma event.
    """
    return min(1.0, (1.5 * m + 10 * m**0.5 + 10) / max(train, 1))


class _SampleCandidates(beam.DoFn):
    """Train rows whose sample hash is under the class's threshold: ~1.5 m per class in all."""

    def __init__(self, rule: HoldoutRule, m: int):
        self.rule, self.m = rule, m

    def process(self, good, counts, dim):
        m = self.m
        for label, rows in records.group_rows(good["label"]):
            c = counts[label]
            keys = good["key"][rows]
            train = self.rule.split(keys, c["max_hold"]) == TRAIN
            u = hashing.decision(keys, self.rule.seed, hashing.SAMPLE)
            keep = train & (u < hashing.fraction_threshold(sample_fraction(m, c["train"])))
            if keep.any():
                yield label, BottomM(m, dim).add(u[keep], good["features"][rows][keep])


class _BottomMFn(MergeableFn):
    def compact(self, acc):
        return acc.compact() if acc is not None else acc

    def extract_output(self, acc):
        return acc.extract()[1]


class _FitKMeans(beam.DoFn):
    def __init__(self, cfg):
        self.cfg = cfg

    def process(self, item, counts):
        label, sample = item
        centroids = kmeans.fit_centroids(sample, self.cfg.clusters, hashing.seed_for(self.cfg.seed, label))
        c = counts[label]
        log.info("class %r: %d records, %d in train, %d clusters fitted on %d rows", label, c["count"],
                 c["train"], len(centroids), len(sample))
        yield label, centroids


class ClassCentroids(beam.PTransform):
    """Valid batches -> (label, centroids): bottom-m sample per class, MiniBatchKMeans on it.

    Knowing each class's size (pass 1), only rows whose sample hash falls under a
    class-size-aware threshold leave the workers: about 1.5 m rows per class in all,
    whatever the corpus size or the bundling, instead of up to m per bundle and class.
    """

    def __init__(self, cfg, dim, counts):
        super().__init__()
        self.cfg, self.dim, self.counts = cfg, dim, counts

    def expand(self, good):
        return (
            good
            | "Candidates" >> beam.ParDo(_SampleCandidates(self.cfg.holdout_rule, self.cfg.kmeans_sample),
                                         self.counts, self.dim)
            | "BottomM" >> beam.CombinePerKey(_BottomMFn())
            | "FitKMeans" >> beam.ParDo(_FitKMeans(self.cfg), self.counts)
        )


def with_centroids(item, centroids):
    label, counts = item
    return label, {**counts, "centroids": centroids.get(label) if centroids else None}


# ---------------------------------------------------------------- pass 3: cluster histograms

def split_and_assign(good: dict, models: dict, rule: HoldoutRule):
    """Per class in the batch: (label, model, {VAL: rows, TEST: rows}, train rows, their clusters)."""
    for label, rows in records.group_rows(good["label"]):
        model = models[label]
        split = rule.split(good["key"][rows], model["max_hold"])
        train = rows[split == TRAIN]
        c = model["centroids"]
        clusters = kmeans.assign(good["features"][train], c) if c is not None else np.zeros(len(train), np.int32)
        yield label, model, {VAL: rows[split == VAL], TEST: rows[split == TEST]}, train, clusters


class _BucketHistograms(beam.DoFn):
    def __init__(self, cfg):
        self.cfg = cfg

    def process(self, good, models):
        for label, model, _, train, clusters in split_and_assign(good, models, self.cfg.holdout_rule):
            bits = selection.bucket_bits(model["train"])
            u = hashing.decision(good["key"][train], self.cfg.seed, hashing.COPIES)
            for c in np.unique(clusters):
                yield (label, int(c)), selection.bucket_histogram(u[clusters == c], bits)


def _add_arrays(arrays):
    total = None
    for a in arrays:
        total = a.copy() if total is None else total + a
    return total


class ClusterHistograms(beam.PTransform):
    """Valid batches -> ((label, cluster), hash-bucket histogram of its train rows)."""

    def __init__(self, cfg, models):
        super().__init__()
        self.cfg, self.models = cfg, models

    def expand(self, good):
        return (
            good
            | "Buckets" >> beam.ParDo(_BucketHistograms(self.cfg), self.models)
            | "Sum" >> beam.CombinePerKey(_add_arrays).with_hot_key_fanout(8)
        )


# ---------------------------------------------------------------- pass 4: resample

class _Resample(beam.DoFn):
    """Copies of each train row by its group's rule; val rows as they are."""

    def __init__(self, cfg, staging: str):
        self.cfg, self.staging = cfg, staging
        self.holdout = Metrics.counter(NS, "records_holdout")
        self.train = Metrics.counter(NS, "records_train_input")
        self.written = Metrics.counter(NS, "records_written")

    def start_bundle(self):
        self.writer = shards.FragmentWriter(self.staging)

    def process(self, good, models, plan):
        for label, _, held, train, clusters in split_and_assign(good, models, self.cfg.holdout_rule):
            cp = plan["classes"][label]
            self.holdout.inc(len(held[VAL]) + len(held[TEST]))
            self.train.inc(len(train))
            write_heldout(self.writer, "val", good, held[VAL], cp["index"], plan, self.cfg)
            write_heldout(self.writer, "test", good, held[TEST], cp["index"], plan, self.cfg)
            u = hashing.decision(good["key"][train], self.cfg.seed, hashing.COPIES)
            copies = np.zeros(len(train), np.int64)
            pending = np.zeros(len(train), bool)
            for c in np.unique(clusters):
                in_c = clusters == c
                copies[in_c], pending[in_c] = selection.copies_by_rule(u[in_c], cp["rules"][int(c)])
            done = ~pending
            self.written.inc(int(copies[done].sum()))
            write_train(self.writer, good, train[done], copies[done], clusters[done], cp, self.cfg)
            for c in np.unique(clusters[pending]):
                rows = train[pending & (clusters == c)]
                yield beam.pvalue.TaggedOutput("boundary", ((label, int(c)), records.take(good, rows)))
        yield from self.writer.drain()

    def finish_bundle(self):
        for fragment in self.writer.flush():
            yield _windowed(fragment)


def write_train(writer, good, rows, copies, clusters, cp, cfg):
    """Expands rows into their copies and sends each copy to its shard.

    A copy's shard and its place in the shard come from hash(id, copy, seed).
    """
    rep = np.repeat(np.arange(len(rows)), copies)
    if not len(rep):
        return
    copy_index = np.arange(len(rep)) - np.repeat(np.cumsum(copies) - copies, copies)
    src = rows[rep]
    base = hashing.decision(good["key"][src], cfg.seed, hashing.SHARD)
    order = hashing.mix64(base + copy_index.astype(np.uint64))
    shard = (order % np.uint64(cp["shards"])).astype(np.int64)
    writer.add_split("train", cp["index"], shard, {
        "id": good["id"][src], "order": order, "label": np.full(len(src), cp["index"], np.int32),
        "cluster": clusters[rep].astype(np.int32), **payload_columns(good, src, cfg)})


def write_heldout(writer, split: str, good, rows, index, plan, cfg):
    """Rows of one class held out to `split` (val or test), as they are: one copy, cluster -1."""
    if not len(rows):
        return
    order = hashing.decision(good["key"][rows], cfg.seed, hashing.SHARD)
    shard = (order % np.uint64(plan[f"{split}_shards"])).astype(np.int64)
    writer.add_split(split, 0, shard, {
        "id": good["id"][rows], "order": order, "label": np.full(len(rows), index, np.int32),
        "cluster": np.full(len(rows), -1, np.int32), **payload_columns(good, rows, cfg)})


def payload_columns(good: dict, rows: np.ndarray, cfg) -> dict:
    """What a shard row carries besides id, label and cluster (see DESIGN.md)."""
    if "image" not in good:
        return {"features": good["features"][rows]}
    cols = {"image": good["image"][rows], "format": good["format"][rows]}
    if cfg.keep_embeddings:
        cols["embedding"] = good["features"][rows]
    return cols


def payload_bytes(good: dict, rows: np.ndarray, keep_embeddings: bool) -> int:
    """Bytes the rows' payload takes in a shard (sizes the shards)."""
    if "image" not in good:
        return int(good["features"][rows].nbytes)
    n = sum(len(b) for b in good["image"][rows])
    return n + (int(good["features"][rows].nbytes) if keep_embeddings else 0)


class _SettleBoundary(beam.DoFn):
    """All rows of one group's boundary bucket: sorted, the first `need` get the extra copy."""

    def __init__(self, cfg, staging: str):
        self.cfg, self.staging = cfg, staging
        self.written = Metrics.counter(NS, "records_written")

    def process(self, item, plan):
        (label, cluster), batches = item
        batch = records.concat(list(batches))
        cp = plan["classes"][label]
        rule = cp["rules"][cluster]
        u = hashing.decision(batch["key"], self.cfg.seed, hashing.COPIES)
        copies = selection.settle_boundary(u, batch["id"].astype(str), rule)
        writer = shards.FragmentWriter(self.staging)
        self.written.inc(int(copies.sum()))
        n = len(u)
        write_train(writer, batch, np.arange(n), copies, np.full(n, cluster), cp, self.cfg)
        yield from writer.flush()


class _WriteRejected(beam.DoFn):
    def __init__(self, staging: str):
        self.staging = staging

    def start_bundle(self):
        self.writer = shards.FragmentWriter(self.staging)

    def process(self, bad):
        self.writer.add(("rejected", 0, 0), bad)
        yield from self.writer.drain()

    def finish_bundle(self):
        for fragment in self.writer.flush():
            yield _windowed(fragment)


class Resample(beam.PTransform):
    """Pass 3: valid and rejected batches -> fragments (dest, path, rows)."""

    def __init__(self, cfg, staging, models, plan):
        super().__init__()
        self.cfg, self.staging, self.models, self.plan = cfg, staging, models, plan

    def expand(self, pcolls):
        good, rejected = pcolls
        out = good | "Resample" >> beam.ParDo(
            _Resample(self.cfg, self.staging), self.models, self.plan
        ).with_outputs("boundary", main="fragments")
        settled = (
            out.boundary
            | "GatherBoundary" >> beam.GroupByKey()
            | "SettleBoundary" >> beam.ParDo(_SettleBoundary(self.cfg, self.staging), self.plan)
        )
        bad = rejected | "WriteRejected" >> beam.ParDo(_WriteRejected(self.staging))
        return (out.fragments, settled, bad) | "AllFragments" >> beam.Flatten()
