"""Pass 2: the k-means sample (rows under a class-size-aware hash threshold, per cache file), the bottom-m sample per class and the fits (`ClassCentroids`, `FitKMeans` on the job's processes)."""

from __future__ import annotations

import logging
import time

import apache_beam as beam
import numpy as np

from pipelines.bulk import Bulk
from pipelines.outputs.report import short_label
from pipelines.parallel import ParallelMap
from pipelines.passes.counting import MergeableFn
from pipelines.passes.histograms import split_classes
from transforms import hashing, kmeans
from transforms.sampling import BottomM
from transforms.stats import TRAIN, HoldoutRule

log = logging.getLogger("pipelines.balance")


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
        groups, split = split_classes(good, counts, rule)
        sample = hashing.decision(good["key"], rule.seed, hashing.SAMPLE)
        for label, rows in groups:
            u = sample[rows]
            keep = (split[rows] == TRAIN) & (u < hashing.fraction_threshold(sample_fraction(m, counts[label]["train"])))
            if keep.any():
                found.setdefault(label, BottomM(m, dim)).add(u[keep], good["features"][rows[keep]])
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
        started = time.perf_counter()
        centroids = kmeans.fit_centroids(sample, self.k, lambda: hashing.seed_for(self.seed, label))
        seconds = time.perf_counter() - started
        # a line per long fit: thousands of small classes would bury the progress lines
        log.log(logging.INFO if seconds >= 1 else logging.DEBUG, "class %r: %d clusters fitted on %d sampled rows "
                "in %.1fs", short_label(label), len(centroids), len(sample), seconds)
        return label, centroids

    @classmethod
    def fit_here(cls, item) -> bool:
        """A sample over POOL_SAMPLE_BYTES is fitted in the worker: sending it would copy it
        twice (the pickle, the process's copy) for each fit in flight."""
        return np.asarray(item[1]).nbytes > cls.POOL_SAMPLE_BYTES


class ClassCentroids(beam.PTransform):
    """(label, candidates) from `sample_candidates` -> one dict, label -> centroids: the
    bottom-m sample per class, MiniBatchKMeans on it (or its rows, when it has at most k
    distinct ones: kmeans.exact_centroids).

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
            | "AllCentroids" >> beam.combiners.ToDict()
        )


def with_centroids(counts: dict, centroids) -> dict:
    """The class models: {label: counts and "centroids" (None without k-means)}."""
    return Bulk({label: {**c, "centroids": centroids.get(label) if centroids else None}
                 for label, c in counts.items()})
