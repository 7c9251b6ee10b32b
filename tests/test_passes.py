"""The analysis passes' per-file work without Beam, on small in-memory batches: pass 1's
`counting.Summaries`, pass 2's `clustering.sample_candidates`, pass 3's
`histograms.bucket_histograms`. Each is checked against the same quantity computed over
all rows at once, and for not depending on how the rows are cut into files."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from helpers import class_models, valid_batches

from pipelines.passes.clustering import sample_candidates, sample_fraction
from pipelines.passes.counting import ID_BUCKETS_BITS, Summaries
from pipelines.passes.histograms import bucket_histograms
from transforms import hashing, records, selection
from transforms.stats import TEST, TRAIN, VAL, HoldoutRule

RULE = HoldoutRule(seed=3, val_fraction=0.2, test_fraction=0.1)
SIZES = {"a": 3000, "b": 40, "c": 1}


def tagged(outputs, tag):
    return [o.value for o in outputs if o.tag == tag]


def train_rows(good, models, label):
    rows = np.flatnonzero(good["label"] == label)
    return rows[RULE.split(good["key"][rows], models[label]["max_hold"]) == TRAIN]


# ---------------------------------------------------------------- pass 1: Summaries

def test_summaries_count_each_class_and_hash_every_id():
    batches = valid_batches(SIZES, parts=3)
    good = records.concat(batches)
    summaries = Summaries(RULE, False)
    for b in batches:
        summaries.add(b)
    outputs = summaries.outputs()
    assert {o.tag for o in outputs} == {"partials", "ids"}
    (partials,) = tagged(outputs, "partials")  # one element for every class
    stats = {label: s.extract() for label, s in partials.items()}
    assert {k: (s.count, s.nbytes) for k, s in stats.items()} == {k: (n, n * 3 * 4) for k, n in SIZES.items()}
    for label, s in stats.items():
        split = RULE.split(good["key"][good["label"] == label], s.max_hold)
        assert (s.train, s.val, s.test) == tuple(int((split == x).sum()) for x in (TRAIN, VAL, TEST))
    assert stats["c"].train == 1  # a class's last record stays in train
    ids = tagged(outputs, "ids")
    want = hashing.hash_strings(pa.array(list(good["id"]), pa.string()))
    assert sorted(np.concatenate([h for _, h in ids]).tolist()) == sorted(want.tolist())
    for bucket, hashes in ids:
        assert set((hashes >> np.uint64(64 - ID_BUCKETS_BITS)).tolist()) == {bucket}


def test_summaries_size_image_payloads_with_and_without_embeddings():
    good = valid_batches({"a": 3, "b": 2}, dim=4, parts=1)[0]
    good["image"] = np.array([b"x" * (10 * (i + 1)) for i in range(5)], dtype=object)
    labels = list(good["label"])
    want = {k: sum(10 * (i + 1) for i, x in enumerate(labels) if x == k) for k in ("a", "b")}
    for keep, extra in ((False, 0), (True, 16)):
        (stats,) = tagged(Summaries(RULE, keep).add(good).outputs(), "partials")
        assert {k: s.extract().nbytes for k, s in stats.items()} == {
            k: v + extra * labels.count(k) for k, v in want.items()}


# ---------------------------------------------------------------- pass 2: sample_candidates

def test_sample_candidates_over_files_merge_to_the_bottom_m_of_all_train_rows():
    batches = valid_batches(SIZES, parts=4)
    models = class_models(batches, RULE)
    good = records.concat(batches)
    m = 50
    merged = {}
    for b in batches:  # each batch stands for a cache file
        found, counters = sample_candidates([b], RULE, m, models, 3)
        assert counters == {}
        for label, part in found:
            assert part._rows <= m  # compacted before it leaves the worker
            merged[label] = merged[label].merge(part) if label in merged else part
    assert sorted(merged) == ["a", "b", "c"]
    for label in SIZES:
        rows = train_rows(good, models, label)
        u = hashing.decision(good["key"][rows], RULE.seed, hashing.SAMPLE)
        order = np.argsort(u, kind="stable")[:m]
        keys, x = merged[label].extract()
        assert keys.tolist() == u[order].tolist()
        np.testing.assert_array_equal(x, good["features"][rows][order])
    assert len(merged["a"].extract()[0]) == m and len(merged["b"].extract()[0]) == models["b"]["train"]


def test_sample_candidates_send_only_rows_under_the_class_threshold():
    (batch,) = valid_batches({"a": 3000}, parts=1)
    models = class_models([batch], RULE)
    ((label, part),), _ = sample_candidates([batch], RULE, 10**6, models, 3)  # m over the class: every row
    assert label == "a" and len(part.extract()[0]) == models["a"]["train"]
    assert sample_fraction(10, models["a"]["train"]) < 0.1
    ((_, part),), _ = sample_candidates([batch], RULE, 10, models, 3)
    keys = part.extract()[0]
    assert len(keys) == 10
    assert keys.max() < hashing.fraction_threshold(sample_fraction(10, models["a"]["train"]))


# ---------------------------------------------------------------- pass 3: bucket_histograms

def test_bucket_histograms_count_train_rows_per_cluster_and_hash_bucket():
    batches = valid_batches(SIZES, parts=3)
    good = records.concat(batches)
    centroids = {"a": np.array([[-5, 0, 0], [5, 0, 0]], np.float32)}  # "b", "c": one cluster
    models = class_models(batches, RULE, centroids)
    (one,), counters = bucket_histograms([good], RULE, models)  # one dict for every (class, cluster)
    assert counters == {}
    parts = {}
    for b in batches:
        for key, h in bucket_histograms([b], RULE, models)[0][0].items():
            parts[key] = parts[key] + h if key in parts else h
    assert sorted(parts) == sorted(one) == [("a", 0), ("a", 1), ("b", 0), ("c", 0)]
    for key, h in one.items():
        np.testing.assert_array_equal(parts[key], h)
    rows = train_rows(good, models, "a")
    cluster = (good["features"][rows][:, 0] > 0).astype(int)  # the nearer of the two centroids
    bits = selection.bucket_bits(models["a"]["train"])
    u = hashing.decision(good["key"][rows], RULE.seed, hashing.COPIES)
    for c in (0, 1):
        want = np.bincount(selection.bucket_of(u[cluster == c], bits), minlength=1 << bits)
        np.testing.assert_array_equal(one[("a", c)], want)
    b_bits = selection.bucket_bits(models["b"]["train"])
    assert bits == 6 and b_bits == 3 and one[("b", 0)].sum() == models["b"]["train"] and len(one[("b", 0)]) == 1 << b_bits
