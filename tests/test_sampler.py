"""transforms.sampler: imbalanced-learn's API over the job's core, and the job's quotas."""

from __future__ import annotations

import collections

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_vectors, read_manifest, run_job, train_records
from imblearn.pipeline import make_pipeline
from imblearn.utils.estimator_checks import (
    check_param_validation,
    parametrize_with_checks,
    sample_dataset_generator,
)
from sklearn.linear_model import LogisticRegression
from sklearn.utils.estimator_checks import (
    parametrize_with_checks as parametrize_with_sklearn_checks,
)

from transforms.sampler import ClusterBalancedSampler, label_texts

SIZES = {"a": 300, "b": 90, "c": 24, "d": 6}

CHECKED = [
    ClusterBalancedSampler(random_state=0),
    ClusterBalancedSampler(clusters_per_class=3, sampling_strategy="median", random_state=0),
    ClusterBalancedSampler(strategy="oversample", random_state=0),
    ClusterBalancedSampler(strategy="hybrid", sampling_strategy="mean", random_state=0),
]


@parametrize_with_checks(CHECKED)
def test_imblearn_estimator_checks(estimator, check):
    check(estimator)


# scikit-learn's own checks too, as imbalanced-learn's test suite runs them on its samplers
# (check_array_api_input skips itself unless SCIPY_ARRAY_API=1 is set).
@parametrize_with_sklearn_checks(CHECKED[:1] + CHECKED[2:3])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", CHECKED[:1] + CHECKED[2:3])
def test_imblearn_param_validation(estimator):
    check_param_validation(type(estimator).__name__, estimator)


@pytest.mark.parametrize(
    "strategy,spec",
    [("oversample", {2: 498, 0: 498}), ("undersample", {2: 201, 0: 201}), ("cluster", {2: 498, 0: 201})],
)
def test_dict_targets_leave_other_classes_alone(strategy, spec):
    # What check_samplers_(sampling_strategy_)fit_resample assert for imblearn's over- and
    # under-samplers; they skip a BaseSampler that does both, so it is asserted here.
    X, y = sample_dataset_generator()
    before = collections.Counter(y)
    _, y_res = ClusterBalancedSampler(strategy=strategy, sampling_strategy=spec, random_state=0).fit_resample(X, y)
    assert collections.Counter(y_res) == {**before, **spec}
    _, y_res = ClusterBalancedSampler(strategy=strategy, random_state=0).fit_resample(X, y)
    after = collections.Counter(y_res)
    if strategy == "oversample":
        assert all(v == max(before.values()) for v in after.values())
    elif strategy == "undersample":
        assert all(v == min(before.values()) for v in after.values())


@pytest.fixture(scope="module")
def data():
    labels, x = make_vectors(SIZES, dim=5, seed=3)
    return x, np.array(labels)


def counts(y):
    return dict(collections.Counter(np.asarray(y).tolist()))


def test_jo_japkowicz_target_and_cluster_quotas(data):
    x, y = data
    s = ClusterBalancedSampler(clusters_per_class=4, random_state=1)
    x_res, y_res = s.fit_resample(x, y)
    sizes = s.cluster_sizes_
    t = max(int((n > 0).sum() * n.max()) for n in sizes.values())
    assert counts(y_res) == {c: t for c in SIZES} == {str(c): v for c, v in s.targets_.items()}
    assert s.sampling_strategy_ == s.targets_
    out_clusters = s.clusters_[s.sample_indices_]
    for c, n in sizes.items():
        assert n.sum() == SIZES[c] and 1 <= len(n) <= 4
        q = s.quotas_[c]
        assert q.sum() == t and (q[n == 0] == 0).all()
        live = q[n > 0]
        assert live.max() - live.min() <= 1  # T / K_c, split by largest remainder
        got = np.bincount(out_clusters[y_res == c], minlength=len(q))
        np.testing.assert_array_equal(got, q)
    np.testing.assert_array_equal(x_res, x[s.sample_indices_])
    assert x_res.dtype == x.dtype and len(s.centroids_["a"]) == len(sizes["a"])


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        ({"strategy": "oversample"}, {"a": 300, "b": 300, "c": 300, "d": 300}),
        ({"strategy": "undersample"}, {"a": 6, "b": 6, "c": 6, "d": 6}),
        ({"strategy": "hybrid"}, {"a": 57, "b": 57, "c": 57, "d": 57}),
        ({"strategy": "hybrid", "sampling_strategy": "mean"}, {"a": 105, "b": 105, "c": 105, "d": 105}),
        ({"strategy": "hybrid", "sampling_strategy": 50}, {"a": 50, "b": 50, "c": 50, "d": 50}),
        ({"strategy": "oversample", "sampling_strategy": 0.5}, {"a": 300, "b": 150, "c": 150, "d": 150}),
        ({"strategy": "undersample", "sampling_strategy": "median"}, {"a": 57, "b": 57, "c": 24, "d": 6}),
        ({"strategy": "oversample", "sampling_strategy": {"d": 40, "c": 30}}, {"a": 300, "b": 90, "c": 30, "d": 40}),
        ({"sampling_strategy": {"a": 100}}, {"a": 100, "b": 90, "c": 24, "d": 6}),
        ({"sampling_strategy": "majority"}, {"a": 300, "b": 300, "c": 300, "d": 300}),
        ({"sampling_strategy": lambda y: {"b": 10}}, {"a": 300, "b": 10, "c": 24, "d": 6}),
        ({"strategy": "none"}, SIZES),
    ],
)
def test_output_counts_equal_the_targets(data, kwargs, expected):
    x, y = data
    s = ClusterBalancedSampler(clusters_per_class=3, random_state=0, **kwargs)
    _, y_res = s.fit_resample(x, y)
    assert counts(y_res) == expected
    assert {str(c): v for c, v in s.targets_.items()} == expected
    assert {str(c): int(q.sum()) for c, q in s.quotas_.items()} == expected


def test_none_returns_the_data_as_it_is(data):
    x, y = data
    x_res, y_res = ClusterBalancedSampler(strategy="none").fit_resample(x, y)
    np.testing.assert_array_equal(x_res, x)
    np.testing.assert_array_equal(y_res, y)


def test_undersampling_keeps_distinct_rows_and_oversampling_keeps_every_row(data):
    x, y = data
    s = ClusterBalancedSampler(strategy="undersample", random_state=0)
    s.fit_resample(x, y)
    assert len(np.unique(s.sample_indices_)) == len(s.sample_indices_)
    s = ClusterBalancedSampler(random_state=0)  # cluster, target max: every row kept
    s.fit_resample(x, y)
    assert set(s.sample_indices_) == set(range(len(y)))


@pytest.mark.parametrize("strategy", ["cluster", "undersample", "hybrid"])
def test_same_random_state_same_output_other_state_other_selection(data, strategy):
    x, y = data

    def run(seed):
        s = ClusterBalancedSampler(strategy=strategy, clusters_per_class=4, random_state=seed)
        x_res, y_res = s.fit_resample(x, y)
        return s, x_res, y_res

    a, xa, ya = run(5)
    b, xb, yb = run(5)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(a.sample_indices_, b.sample_indices_)
    c, _, yc = run(6)
    assert counts(yc) == counts(ya)  # same targets (classes are sized the same) ...
    assert not np.array_equal(c.sample_indices_, a.sample_indices_)  # ... other rows
    assert a.seed_ == 5 and c.seed_ == 6


def test_random_state_none_and_instances_draw_a_seed(data):
    x, y = data
    rs = np.random.RandomState(0)
    s = ClusterBalancedSampler(strategy="undersample", random_state=rs).fit(x, y)
    again = ClusterBalancedSampler(strategy="undersample", random_state=np.random.RandomState(0)).fit(x, y)
    assert s.seed_ == again.seed_
    np.testing.assert_array_equal(s.sample_indices_, again.sample_indices_)
    assert isinstance(ClusterBalancedSampler(random_state=None).fit(x, y).seed_, int)


def test_in_an_imblearn_pipeline_with_string_labels(data):
    x, y = data
    y = np.array([f"class {v}" for v in y], dtype=object)
    model = make_pipeline(ClusterBalancedSampler(clusters_per_class=3, random_state=0), LogisticRegression(max_iter=500))
    model.fit(x, y)
    pred = model.predict(x)
    assert set(model.classes_) == set(y)
    assert set(pred) <= set(y) and len(pred) == len(y)
    assert (pred == y).mean() > 0.9  # the blobs of different classes are far apart


def test_integer_labels_are_named_in_decimal():
    assert label_texts(np.array([3, 10, -1])) == ["3", "10", "-1"]
    assert label_texts(np.array([1.0, 2.0])) == ["1", "2"]
    assert label_texts(np.array(["b", "a"], dtype=object)) == ["b", "a"]


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"sampling_strategy": "biggest"}, ValueError, r"sampling_strategy must be one of .*Received: 'biggest'"),
        ({"sampling_strategy": 1.5}, ValueError, r"'sampling_strategy' parameter .* Got 1.5 instead"),
        ({"sampling_strategy": 0}, ValueError, r"'sampling_strategy' parameter .* Got 0 instead"),
        ({"sampling_strategy": [1, 2]}, ValueError, r"'sampling_strategy' parameter .* Got \[1, 2\] instead"),
        ({"sampling_strategy": {"zebra": 10}}, ValueError, r"sampling_strategy names classes that are not in the corpus: \['zebra'\]"),
        ({"sampling_strategy": {"a": -1}}, ValueError, r"sampling_strategy values must be integers >= 1. Received: 'a': -1"),
        ({"sampling_strategy": {"a": 2.5}}, ValueError, r"Received: 'a': 2.5"),
        ({"strategy": "oversample", "sampling_strategy": {"b": 10}}, ValueError, "class 'b' has 90 training records and 10 were asked"),
        ({"strategy": "undersample", "sampling_strategy": {"d": 10}}, ValueError, "class 'd' has 6 training records and 10 were asked"),
        ({"sampling_strategy": lambda y: 5}, ValueError, "must return a dict of class to count. Received: 5"),
        ({"strategy": "none", "sampling_strategy": "mean"}, ValueError, "leave sampling_strategy='auto'. Received: 'mean'"),
        ({"strategy": "smote"}, ValueError, r"'strategy' parameter .* Got 'smote' instead"),
        ({"clusters_per_class": 0}, ValueError, r"'clusters_per_class' parameter .* Got 0 instead"),
    ],
)
def test_bad_parameters_are_clear_errors(data, kwargs, error, match):
    x, y = data
    with pytest.raises(error, match=match):
        ClusterBalancedSampler(**kwargs).fit_resample(x, y)


# ---------------------------------------------------------------- same as the Beam job

def write_corpus(folder, labels, x, label_type):
    folder.mkdir()
    half = len(labels) // 2
    for i, part in enumerate((slice(0, half), slice(half, None))):
        table = pa.table({
            "label": pa.array(list(labels[part]), label_type),
            "features": pa.array([list(map(float, r)) for r in x[part]], pa.list_(pa.float32())),
        })
        pq.write_table(table, folder / f"part-{i}.parquet", row_group_size=64)
    return str(folder / "*.parquet")


@pytest.mark.parametrize(
    "labels_as,strategy,target,seed,k,m",
    [
        ("str", "cluster", None, 7, 4, 100_000),  # Jo & Japkowicz: every cluster grows
        # big clusters shrink, small ones grow; k-means on the bottom-50 sample of a and b
        ("str", "cluster", "median", 11, 3, 50),
        ("int", "hybrid", "mean", 3, 8, 100_000),  # random strategy, integer labels
    ],
)
def test_same_quotas_and_rows_as_the_beam_job(tmp_path, labels_as, strategy, target, seed, k, m):
    names, x = make_vectors(SIZES, dim=5, seed=seed)
    labels = np.array([ord(v) - ord("a") for v in names] if labels_as == "int" else names)
    corpus = write_corpus(tmp_path / "corpus", labels, x, pa.int64() if labels_as == "int" else pa.string())
    out = tmp_path / "out"
    args = ["--holdout_fraction", "0", "--seed", str(seed), "--clusters_per_class", str(k), "--strategy", strategy,
            "--kmeans_sample", str(m), "--output_format", "parquet", "--num_shards", "1"]
    run_job(corpus, out, *args, *(["--target", target] if target else []))
    manifest = read_manifest(str(out))

    s = ClusterBalancedSampler(strategy=strategy, sampling_strategy=target or "auto", clusters_per_class=k,
                               kmeans_sample=m, random_state=seed)
    _, y_res = s.fit_resample(x, labels)
    texts = dict(zip(s.classes_.tolist(), label_texts(s.classes_), strict=True))
    by_text = {texts[c]: c for c in s.classes_.tolist()}
    assert sorted(by_text) == sorted(c["label"] for c in manifest["classes"])
    for c in manifest["classes"]:
        label = by_text[c["label"]]
        assert c["train_input"] == c["input"] == int(s.cluster_sizes_[label].sum())
        assert c["target"] == s.targets_[label] == c["output"]
        assert [cl["input"] for cl in c["clusters"]] == s.cluster_sizes_[label].tolist()
        assert [cl["quota"] for cl in c["clusters"]] == s.quotas_[label].tolist()
    if strategy == "cluster":
        assert max(len(c["clusters"]) for c in manifest["classes"]) > 1

    idx = s.sample_indices_
    mine = sorted(zip(s.ids_[idx].tolist(), [texts[v] for v in y_res.tolist()], s.clusters_[idx].tolist(),
                      strict=True))
    assert mine == train_records(str(out))
