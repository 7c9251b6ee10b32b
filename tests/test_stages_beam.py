"""Beam stages with TestPipeline and assert_that, on small in-memory batches."""

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from helpers import valid_batches as batches

from pipelines.config import BalanceConfig
from pipelines.passes.clustering import ClassCentroids, sample_candidates, with_centroids
from pipelines.passes.counting import ClassCounts, Summaries
from pipelines.passes.histograms import ClusterHistograms, bucket_histograms
from transforms import hashing, kmeans, records
from transforms.sampling import BottomM
from transforms.stats import TRAIN, ClassStats

CFG = BalanceConfig.of(input="unused", output="unused", input_format="parquet", clusters_per_class=2,
                    kmeans_sample=50, holdout_fraction=0.2, seed=3)


def pipeline():
    return TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]))


def class_models(p, data):
    """Passes 1 and 2 as the job chains them: counts, then centroids from the samples; the
    models (one dict) as (label, model) items."""
    counts = (p | "Data1" >> beam.Create(data)
              | "Summarise" >> beam.FlatMap(lambda b: [o.value for o in Summaries(CFG.holdout, False)
                                                       .add(b).outputs() if o.tag == "partials"])
              | "Counts" >> ClassCounts())
    cents = beam.pvalue.AsSingleton(
        p | "Data2" >> beam.Create(data)  # each batch stands for a cache file
        | beam.FlatMap(lambda b, c: sample_candidates([b], CFG.holdout, CFG.plan.kmeans_sample, c, 3)[0],
                       beam.pvalue.AsSingleton(counts))
        | ClassCentroids(2, CFG.seed))
    return counts | beam.Map(with_centroids, cents) | beam.FlatMap(lambda models: sorted(models.items()))


def test_class_models_count_and_fit_per_class():
    with pipeline() as p:
        models = class_models(p, batches({"a": 200, "b": 9}))
        summary = models | beam.Map(lambda kv: (kv[0], kv[1]["count"], len(kv[1]["centroids"]),
                                                kv[1]["train"] >= 1))
        assert_that(summary, equal_to([("a", 200, 2, True), ("b", 9, 2, True)]))


def pure_models(data):
    """What ClassModels computes, without Beam: one accumulator per class over all rows."""
    good = records.concat(data)
    out = {}
    for label in sorted(set(good["label"])):
        rows = good["label"] == label
        stats = ClassStats(CFG.holdout).add(good["key"][rows]).extract()
        train = CFG.holdout.split(good["key"][rows], stats.max_hold) == TRAIN
        u = hashing.decision(good["key"][rows][train], CFG.seed, hashing.SAMPLE)
        sample = BottomM(CFG.plan.kmeans_sample, 3).add(u, good["features"][rows][train]).extract()[1]
        centroids = kmeans.fit_centroids(sample, 2, hashing.seed_for(CFG.seed, label))
        out[label] = {"count": stats.count, "train": stats.train, "max_hold": stats.max_hold,
                      "centroids": centroids}
    return out


def test_models_do_not_depend_on_how_batches_are_cut():
    want = pure_models(batches({"a": 300, "b": 40}, parts=1))
    expected = [(k, v["train"], v["centroids"].tobytes()) for k, v in want.items()]
    with pipeline() as p:
        out = (class_models(p, batches({"a": 300, "b": 40}, parts=7))
               | beam.Map(lambda kv: (kv[0], kv[1]["train"], kv[1]["centroids"].tobytes())))
        assert_that(out, equal_to(expected))


def test_cluster_histograms_add_up_to_the_train_rows():
    data = batches({"a": 500, "b": 30})
    models = pure_models(data)
    with pipeline() as p:
        hist = (p | beam.Create(data)
                | beam.FlatMap(lambda b, m: bucket_histograms([b], CFG.holdout, m)[0],
                               beam.pvalue.AsDict(p | "M" >> beam.Create(list(models.items()))))
                | ClusterHistograms()
                | beam.FlatMap(lambda sums: [(label, int(h.sum())) for (label, _), h in sums.items()])
                | beam.CombinePerKey(sum))
        assert_that(hist, equal_to([("a", models["a"]["train"]), ("b", models["b"]["train"])]))
