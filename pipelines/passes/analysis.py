"""Passes 1 to 3, shared by pipelines.balance and pipelines.histogram: what the corpus holds.

    pass 1  read -> class counts (val / test / train per class), repeated ids
    pass 2  read -> bottom-m sample per class -> k-means centroids   (cluster strategy only)
    pass 3  read -> hold-out, nearest centroid -> hash-bucket histograms per (class, cluster)

`analyze` builds them on a pipeline and returns what the two jobs go on from; the
balance job plans and resamples (pipelines/balance.py), the histogram job reports
(pipelines/histogram.py). Pass 1 reads, checks and hashes each record once (decodes
each image once) and caches the result; the later passes read that cache
(pipelines/passes/record_cache.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from pipelines.config import BalanceConfig, as_flags
from pipelines.errors import JobError
from pipelines.inputs import image_reading, reading
from pipelines.outputs.layout import sort_labels
from pipelines.passes import record_cache
from pipelines.passes.clustering import ClassCentroids, sample_candidates, with_centroids
from pipelines.passes.counting import ClassCounts, DuplicateIds, summarise
from pipelines.passes.histograms import ClusterHistograms, bucket_histograms
from transforms import plan as planning


def pass_names(clusters: int, resample: bool = True) -> dict[int, str]:
    """Pass number -> the name its progress lines carry, e.g. "pass 2/4 (k-means sample)"."""
    steps = [(1, "class counts")]
    if clusters > 1:  # the random strategies resample each class as one group: no k-means
        steps.append((2, "k-means sample"))
    steps.append((3, "cluster histograms" if clusters > 1 else "class histograms"))
    if resample:
        steps.append((4, "resample"))
    return {n: f"pass {i}/{len(steps)} ({what})" for i, (n, what) in enumerate(steps, 1)}


@dataclass
class Analysis:
    """What passes 1 to 3 leave for the job that built them."""

    over_cache: Callable  # over_cache(n, work, *side, count=False, tags=()) -> (outputs, rejected, total read)
    dim: Any  # the vector length: an int, or a side input when the corpus decides it
    counts: beam.PCollection  # one dict: label -> {count, train, val, test, max_hold, bytes}
    models: Any  # side input, one dict: label -> counts and centroids
    histograms: beam.PCollection  # one dict: (label, cluster) -> hash-bucket histogram
    rejected: beam.PCollection  # rejected batches of pass 3
    read_total: beam.PCollection  # one element: records pass 3 read
    duplicate_ids: beam.PCollection  # one element: valid records whose id repeats another's


def check_targets(counts: dict, strategy: str, target, target_counts: dict, read=None) -> dict:
    """The class counts, once the strategy, --target and --target_counts are known to fit them.

    Every check that needs only the train size per class (unknown labels in
    --target_counts, a single class, over-sampling asked to shrink a class) runs here,
    after the counting pass; the clusters only change how big the targets are. `read`
    (pass 1's total, unused) orders the check after pass 1's progress line.
    """
    train = {label: c["train"] for label, c in counts.items()}
    try:
        planning.resolve_targets({x: train[x] for x in sort_labels(train)}, strategy,
                                 None if target == "max" else target, target_counts)
    except planning.SpecError as e:
        raise JobError(as_flags(e)) from None
    return counts


def analyze(p: beam.Pipeline, cfg: BalanceConfig, staging: str, dim, resample: bool = True) -> Analysis:
    """Passes 1 to 3 on pipeline `p`: class counts, centroids, cluster histograms.

    Passes 2 and 3 (and the balance job's pass 4) run a function over each file of the
    record cache (`over_cache`), on the pass processes when --processes gives some.

    With resample=False pass 3 is the job's last and counts the records it reads in the
    Beam counters (each record is counted once per job); with resample=True the targets
    are checked against the class counts before any k-means.
    """
    names = pass_names(cfg.plan.clusters, resample)
    spec, rule = cfg.read, cfg.holdout
    # Pass 1 reads the input (decodes images), checks and hashes every record once and
    # caches the result; passes 2 to 4 read the cache (pipelines/passes/record_cache.py).
    if cfg.payload == "image" and cfg.images.cluster_on == "inception_v3":  # embedded by RunInference, then cached
        good, rejected, counted = p | "Pass1Read" >> image_reading.EmbedImageCorpus(spec, cfg.images, names[1])
        index = (good, rejected) | "Pass1Cache" >> record_cache.WriteCache(staging)
        summaries = summarise(good, rule, cfg.output.keep_embeddings)
    else:  # a unit at a time: read, checked (decoded), cached and summarised
        if cfg.payload == "image":
            make_units, checked = image_reading.image_units, image_reading.CheckedImages(spec, cfg.images)
        else:
            make_units, checked = reading.units_of_files, reading.CheckedVectors(spec)
            if dim is None:
                dim = beam.pvalue.AsSingleton(p | "FeatureDimension" >> reading.FeatureDimension(spec))
        units = p | "Pass1Units" >> reading.Units(make_units, spec)
        summaries = units | "Pass1Read" >> record_cache.ReadIntoCache(checked, staging, rule, cfg.output.keep_embeddings, dim,
                                                                      names[1], cfg.reads_in_processes)
        index, counted = summaries.cache, summaries.counted
    cache = beam.pvalue.AsList(index)

    def over_cache(n, work, *side, count=False, tags=()):
        """Pass n over the cache: `work` on each file (record_cache.CachePass)."""
        columns = record_cache.ANALYSIS_COLUMNS if n in (2, 3) else None  # pass 4 writes every column
        out = p | f"Pass{n}Read" >> record_cache.CachePass(
            names[n], spec.progress_seconds, cache, work, *side, count=count, columns=columns,
            tags=tags)
        return out, out.rejected, out.counted | f"Pass{n}Done" >> reading.PassDone(names[n])

    read = counted | "Pass1Done" >> reading.PassDone(names[1])
    # The class counts, centroids, models and histograms are each one dict (one element),
    # so thousands of classes cost no more Beam elements than ten.
    counts = summaries.partials | "Pass1ClassCounts" >> ClassCounts()
    if resample:  # the balance job stops here on a spec the class counts refute (after pass 1's line)
        counts = counts | "CheckTargets" >> beam.Map(check_targets, cfg.plan.strategy, cfg.plan.target,
                                                     cfg.plan.target_counts, beam.pvalue.AsSingleton(read))
    duplicate_ids = summaries.ids | "Pass1DuplicateIds" >> DuplicateIds()
    centroids = None
    if cfg.plan.clusters > 1:  # the random strategies resample each class as one group
        out, _, _ = over_cache(2, sample_candidates, rule, cfg.plan.kmeans_sample, beam.pvalue.AsSingleton(counts),
                               dim)
        centroids = beam.pvalue.AsSingleton(out.out | "Pass2Centroids" >> ClassCentroids(
            cfg.plan.clusters, rule.seed))
    models = beam.pvalue.AsSingleton(counts | "ClassModels" >> beam.Map(with_centroids, centroids))

    out, rejected, read_total = over_cache(3, bucket_histograms, rule, models, count=not resample)
    histograms = out.out | "Pass3ClusterHistograms" >> ClusterHistograms()
    return Analysis(over_cache, dim, counts, models, histograms, rejected, read_total, duplicate_ids)
