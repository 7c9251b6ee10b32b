"""The Beam stages of passes 1 to 3: thin wrappers around transforms/.

  pass 1  Summaries         per batch: per-class partials and id hashes (where the batches
                            are read: record_cache.read_into_cache, or `summarise`)
          ClassCounts       count, val / test / train sizes, hold-out top, bytes per class
          DuplicateIds      valid records whose id repeats another's
  pass 2  sample_candidates candidates under a class-size-aware hash threshold, per file;
          ClassCentroids    -> bottom-m sample -> FitKMeans (per class, parallel) -> centroids
  pass 3  bucket_histograms hold-out, nearest centroid -> hash-bucket histograms per
                            (class, cluster), per file; ClusterHistograms sums them, and
                            the plan sets exact quotas from the sums

Each stage receives the values it uses (the hold-out rule, k, m, the seed), not the
job's configuration. Passes 2 and 3 are functions of a cache file's batches, which
record_cache.CachePass runs (on the pass processes where there are some). What flows
from one pass to the next is small and travels as side inputs; pass 4 is
pipelines/resample.py.
"""

from __future__ import annotations

import logging

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pipelines.parallel import ParallelMap
from pipelines.report import short_label
from transforms import hashing, kmeans, records, selection
from transforms.sampling import BottomM
from transforms.stats import TEST, TRAIN, VAL, ClassStats, HoldoutRule

log = logging.getLogger("pipelines.balance")


# ---------------------------------------------------------------- pass 1: counts

class Summaries:
    """Pass 1's summaries of valid batches: per-class partial statistics (ClassStats) and the
    records' id hashes (by bucket when output); small next to the batches, merged as they come."""

    def __init__(self, rule: HoldoutRule, keep_embeddings: bool):
        self.rule, self.keep_embeddings = rule, keep_embeddings
        self.stats: dict[str, ClassStats] = {}
        self.ids: list[np.ndarray] = []

    def add(self, good: dict) -> Summaries:
        for label, rows in records.group_rows(good["label"]):
            stats = ClassStats(self.rule).add(good["key"][rows], nbytes=payload_bytes(good, rows, self.keep_embeddings))
            self.stats[label] = self.stats[label].merge(stats) if label in self.stats else stats
        self.ids.append(hashing.hash_strings(pa.array(list(good["id"]), pa.string())))
        return self

    def outputs(self) -> list:
        """("partials", (label, ClassStats)) per class and ("ids", (bucket, id hashes)) per bucket."""
        ids = id_buckets(np.concatenate(self.ids)) if self.ids else []
        return ([beam.pvalue.TaggedOutput("partials", item) for item in self.stats.items()]
                + [beam.pvalue.TaggedOutput("ids", item) for item in ids])


class _Summarise(beam.DoFn):
    def __init__(self, rule: HoldoutRule, keep_embeddings: bool):
        self.rule, self.keep_embeddings = rule, keep_embeddings

    def process(self, good):
        yield from Summaries(self.rule, self.keep_embeddings).add(good).outputs()


def summarise(good, rule: HoldoutRule, keep_embeddings: bool):
    """Valid batches -> the pass-1 summaries' outputs ("partials", "ids"), batch by batch:
    for images embedded by InceptionV3, whose pass 1 has a RunInference stage."""
    return good | "Summarise" >> beam.ParDo(_Summarise(rule, keep_embeddings)).with_outputs("partials", "ids",
                                                                                            main="none")


def payload_bytes(good: dict, rows: np.ndarray, keep_embeddings: bool) -> int:
    """Bytes the rows' payload takes in a shard (sizes the shards)."""
    if "image" not in good:
        return int(good["features"][rows].nbytes)
    n = sum(len(b) for b in good["image"][rows])
    return n + (int(good["features"][rows].nbytes) if keep_embeddings else 0)


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
    """(label, ClassStats) partials -> (label, {count, train, val, test, max_hold, bytes}): small, per class."""

    def expand(self, partials):
        return partials | "Combine" >> beam.CombinePerKey(_ClassStatsFn()).with_hot_key_fanout(8)


ID_BUCKETS_BITS = 6  # 64 buckets: at 1e9 records about 125 MB of id hashes per bucket


def id_buckets(hashes: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Id hashes split by their top bits: (bucket, hashes) per bucket present."""
    bucket = hashes >> np.uint64(64 - ID_BUCKETS_BITS)
    order = np.argsort(bucket, kind="stable")
    hashes, bucket = hashes[order], bucket[order]
    cuts = [0, *(np.flatnonzero(np.diff(bucket)) + 1).tolist(), len(bucket)]
    return [(int(bucket[a]), hashes[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


def _repeats(item) -> int:
    _, parts = item
    h = np.concatenate(list(parts))
    return len(h) - len(np.unique(h))


class DuplicateIds(beam.PTransform):
    """(bucket, id hashes) -> one int: records whose id (by its 64-bit hash) repeats another's.

    Ids can repeat across classes, so the count is global: id hashes travel in batches,
    bucketed by their top bits, and each bucket is counted with one np.unique.
    """

    def expand(self, ids):
        return (
            ids
            | "ByBucket" >> beam.GroupByKey()
            | "Repeats" >> beam.Map(_repeats)
            | "Total" >> beam.CombineGlobally(sum)
        )


# ---------------------------------------------------------------- pass 2: k-means samples

def sample_fraction(m: int, train: int) -> float:
    """Share of a class's train rows that must pass the sample hash so that >= m do.

    Expected m + 10 sqrt(m + 25) + 50 candidates: that is m plus ten standard deviations of
    their number (at most the square root of the expected count), so falling short of m
    is a 10-sigma event, and about m rows per class leave the workers (103,200 at m = 100,000).
    """
    return min(1.0, (m + 10 * (m + 25) ** 0.5 + 50) / max(train, 1))


def sample_candidates(batches, rule: HoldoutRule, m: int, counts: dict, dim: int, unit=None):
    """Pass 2 over some valid batches (a cache file): per class, a BottomM of the train rows
    whose sample hash is under the class's threshold (~m per class over all files).
    Returns (outputs, counters), as a CachePass's work does."""
    found: dict[str, BottomM] = {}
    for good in batches:
        for label, rows in records.group_rows(good["label"]):
            c = counts[label]
            keys = good["key"][rows]
            train = rule.split(keys, c["max_hold"]) == TRAIN
            u = hashing.decision(keys, rule.seed, hashing.SAMPLE)
            keep = train & (u < hashing.fraction_threshold(sample_fraction(m, c["train"])))
            if keep.any():
                found.setdefault(label, BottomM(m, dim)).add(u[keep], good["features"][rows][keep])
    return [(label, b.compact()) for label, b in found.items()], {}


class _BottomMFn(MergeableFn):
    def compact(self, acc):
        return acc.compact() if acc is not None else acc

    def extract_output(self, acc):
        return acc.extract()[1]


class FitKMeans:
    """(label, sample) -> (label, centroids), by ParallelMap: several classes at once, on the
    job's processes where there are some (a small object: it pickles with each call)."""

    POOL_SAMPLE_BYTES = 128 << 20  # 100,000 rows of 320 float32 values

    def __init__(self, k: int, seed: int):
        self.k, self.seed = k, seed

    def __call__(self, item):
        label, sample = item
        centroids = kmeans.fit_centroids(sample, self.k, hashing.seed_for(self.seed, label))
        log.info("class %r: %d clusters fitted on %d sampled rows", short_label(label), len(centroids), len(sample))
        return label, centroids

    @classmethod
    def fit_here(cls, item) -> bool:
        """A sample over POOL_SAMPLE_BYTES is fitted in the worker: sending it would copy it
        twice (the pickle, the process's copy) for each fit in flight."""
        return np.asarray(item[1]).nbytes > cls.POOL_SAMPLE_BYTES


class ClassCentroids(beam.PTransform):
    """(label, candidates) from `sample_candidates` -> (label, centroids): the bottom-m
    sample per class, MiniBatchKMeans on it.

    Knowing each class's size (pass 1), only rows whose sample hash falls under a
    class-size-aware threshold leave the workers: about m rows per class in all,
    whatever the corpus size or the bundling, instead of up to m per bundle and class.
    """

    def __init__(self, k: int, seed: int):
        super().__init__()
        self.k, self.seed = k, seed

    def expand(self, candidates):
        return (
            candidates
            | "BottomM" >> beam.CombinePerKey(_BottomMFn())
            | "FitKMeans" >> beam.ParDo(ParallelMap(FitKMeans(self.k, self.seed), here=FitKMeans.fit_here))
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


def bucket_histograms(batches, rule: HoldoutRule, models: dict, unit=None):
    """Pass 3 over some valid batches (a cache file): ((label, cluster), hash-bucket histogram
    of its train rows), summed over the batches. Returns (outputs, counters), as a
    CachePass's work does."""
    found: dict[tuple, np.ndarray] = {}
    for good in batches:
        for label, model, _, train, clusters in split_and_assign(good, models, rule):
            bits = selection.bucket_bits(model["train"])
            u = hashing.decision(good["key"][train], rule.seed, hashing.COPIES)
            for c in np.unique(clusters):
                h = selection.bucket_histogram(u[clusters == c], bits)
                key = (label, int(c))
                found[key] = h if key not in found else found[key] + h
    return list(found.items()), {}


def _add_arrays(arrays):
    total = None
    for a in arrays:
        total = a.copy() if total is None else total + a
    return total


class ClusterHistograms(beam.PTransform):
    """((label, cluster), histogram) parts from `bucket_histograms` -> one sum per group."""

    def expand(self, parts):
        return parts | "Sum" >> beam.CombinePerKey(_add_arrays).with_hot_key_fanout(8)
