"""Pass 1's stages: per-class partials and id hashes of each unit (`Summaries`), the class counts (`ClassCounts`, one dict) and the repeated ids (`DuplicateIds`)."""

from __future__ import annotations

import copy

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pipelines.bulk import Bulk
from pipelines.outputs.layout import sort_labels
from transforms import hashing, records
from transforms.stats import ClassStats, HoldoutRule


class Summaries:
    """Pass 1's summaries of valid batches: per-class partial statistics (ClassStats) and the
    records' id hashes (by bucket when output); small next to the batches, merged as they come."""

    def __init__(self, rule: HoldoutRule, keep_embeddings: bool):
        self.rule, self.keep_embeddings = rule, keep_embeddings
        self.stats: dict[str, ClassStats] = {}
        self.ids: list[np.ndarray] = []

    def add(self, good: dict) -> Summaries:
        labels, codes = records.label_codes(good["label"])
        every = ClassStats.of_classes(self.rule, codes, len(labels), good["key"], row_bytes(good, self.keep_embeddings))
        for label, stats in zip(labels.tolist(), every, strict=True):
            self.stats[label] = self.stats[label].merge(stats) if label in self.stats else stats
        self.ids.append(hashing.hash_strings(pa.array(list(good["id"]), pa.string())))
        return self

    def outputs(self) -> list:
        """("partials", {label: ClassStats}): one element for all the classes seen (with
        thousands of classes, one element a class would cost more in Beam than the counting),
        and ("ids", (bucket, id hashes)) per bucket."""
        ids = id_buckets(np.concatenate(self.ids)) if self.ids else []
        return ([beam.pvalue.TaggedOutput("partials", Bulk(self.stats))] if self.stats else []) + [
            beam.pvalue.TaggedOutput("ids", item) for item in ids]


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


def row_bytes(good: dict, keep_embeddings: bool) -> np.ndarray:
    """Bytes each row's payload takes in a shard (sizes the shards)."""
    x = good["features"]
    vector = np.full(len(x), x.itemsize * (x.shape[1] if x.ndim > 1 else 1), np.int64)
    if "image" not in good:
        return vector
    images = np.fromiter((len(b) for b in good["image"]), np.int64, len(good["image"]))
    return images + vector if keep_embeddings else images


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


class KeyedMergeFn(beam.CombineFn):
    """Dicts of partial values -> one dict (a Bulk), the values of a key merged by
    `merge(a, b)` (one element for thousands of keys, where per-key elements would cost
    more in Beam than the work)."""

    def merge(self, a, b):
        raise NotImplementedError

    def create_accumulator(self):
        return Bulk()

    def add_input(self, acc, part):
        for key, value in part.items():  # a copy first: merge may change its left side, never an input
            acc[key] = self.merge(acc[key], value) if key in acc else copy.copy(value)
        return acc

    def merge_accumulators(self, accs):
        out = Bulk()
        for acc in accs:
            self.add_input(out, acc)
        return out

    def extract_output(self, acc):
        return acc


class _ClassStatsFn(KeyedMergeFn):
    """{label: ClassStats} partials -> {label: counts}, every class in one dict (in label order)."""

    def merge(self, a, b):
        return a.merge(b)

    def extract_output(self, acc):
        return Bulk({label: counts_of(acc[label].extract()) for label in sort_labels(acc)})


def counts_of(s) -> dict:
    return {"count": s.count, "train": s.train, "val": s.val, "test": s.test, "max_hold": s.max_hold,
            "bytes": s.nbytes}


class ClassCounts(beam.PTransform):
    """{label: ClassStats} partials -> one element, {label: {count, train, val, test, max_hold,
    bytes}} for every class: a few numbers a class, so one dict even at 100,000 classes."""

    def expand(self, partials):
        return partials | "Combine" >> beam.CombineGlobally(_ClassStatsFn())


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
