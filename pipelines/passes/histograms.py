"""Pass 3: hold-out and nearest centroid per row, hash-bucket histograms per (class, cluster) per cache file (`bucket_histograms`), summed (`ClusterHistograms`); the plan sets exact quotas from them."""

from __future__ import annotations

import apache_beam as beam
import numpy as np

from pipelines.bulk import Bulk
from pipelines.passes.counting import KeyedMergeFn
from transforms import hashing, kmeans, records, selection
from transforms.stats import TEST, TRAIN, VAL, HoldoutRule


def split_classes(good: dict, models: dict, rule: HoldoutRule) -> tuple[list, np.ndarray]:
    """The batch's classes, (label, rows) each in label order, and every row's split (TRAIN,
    VAL or TEST), hashed once for the whole batch."""
    codes = records.label_codes(good["label"])
    split = rule.split_classes(good["key"], codes[1], [models[label]["max_hold"] for label in codes[0].tolist()])
    return records.group_rows(good["label"], codes), split


def split_and_assign(good: dict, models: dict, rule: HoldoutRule):
    """Per class in the batch: (label, model, {VAL: rows, TEST: rows}, train rows, their clusters)."""
    groups, splits = split_classes(good, models, rule)
    for label, rows in groups:
        model = models[label]
        split = splits[rows]
        train = rows[split == TRAIN]
        c = model["centroids"]
        clusters = kmeans.assign(good["features"][train], c) if c is not None else np.zeros(len(train), np.int32)
        yield label, model, {VAL: rows[split == VAL], TEST: rows[split == TEST]}, train, clusters


def bucket_histograms(batches, rule: HoldoutRule, models: dict, unit=None):
    """Pass 3 over some valid batches (a cache file): one dict, (label, cluster) -> hash-bucket
    histogram of its train rows, summed over the batches. Returns (outputs, counters), as a
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
    return ([Bulk(found)] if found else []), {}


class _SumHistograms(KeyedMergeFn):
    def merge(self, a, b):
        return a + b  # a new array: the inputs stay as they were


class ClusterHistograms(beam.PTransform):
    """{(label, cluster): histogram} parts from `bucket_histograms` (one a cache file) -> one
    dict of the sums: the plan needs them all in one place anyway."""

    def expand(self, parts):
        return parts | "Sum" >> beam.CombineGlobally(_SumHistograms())
