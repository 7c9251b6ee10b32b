"""--test_fraction: a test/ split beside val/, hash-chosen per class, disjoint, never resampled."""

from __future__ import annotations

import collections
import glob
import os

import pyarrow.parquet as pq
import pytest
from helpers import SIZES, read_manifest, run_job, train_records, write_parquet_corpus


def split_rows(out, split):
    """(id, label_text) of every row in OUT/parquet/<split>/."""
    files = sorted(glob.glob(os.path.join(out, "parquet", split, "*.parquet")))
    rows = []
    for f in files:
        t = pq.read_table(f, columns=["id", "label_text", "cluster"])
        assert set(t.column("cluster").to_pylist()) <= {-1}
        rows += zip(t.column("id").to_pylist(), t.column("label_text").to_pylist(), strict=True)
    return rows


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("splits")
    corpus = write_parquet_corpus(str(root / "corpus"))
    out = {}
    for name, extra in (("test", ["--test_fraction", "0.2"]), ("plain", [])):
        out[name] = str(root / name)
        run_job(corpus, out[name], "--clusters_per_class", "2", "--num_shards", "1", *extra)
    return out


def test_test_split_counts_equal_the_files_and_reconcile(runs):
    out = runs["test"]
    m = read_manifest(out)
    t = m["totals"]
    assert t["read"] == t["rejected"] + t["val"] + t["test"] + t["train_input"]
    assert t["holdout"] == t["val"] + t["test"] and t["test"] > 0
    test = split_rows(out, "test")
    assert len(test) == m["test"]["records"] == t["test"]
    for fmt in ("parquet", "tfrecord"):
        assert sum(s["records"] for s in m["test"]["shards"][fmt]) == t["test"]
        assert all(s["path"].startswith(f"{fmt}/test/") for s in m["test"]["shards"][fmt])
    by_class = collections.Counter(label for _, label in test)
    for c in m["classes"]:
        assert c["input"] == c["val"] + c["test"] + c["train_input"] == SIZES[c["label"]]
        assert c["holdout"] == c["val"] + c["test"]
        assert by_class.get(c["label"], 0) == c["test"]
        assert c["train_input"] >= 1
    assert 0.1 < t["test"] / (t["read"] - t["rejected"]) < 0.3


def test_test_ids_are_in_neither_train_nor_val_and_val_does_not_move(runs):
    out = runs["test"]
    test_ids = {i for i, _ in split_rows(out, "test")}
    val_ids = {i for i, _ in split_rows(out, "val")}
    train_ids = {r[0] for r in train_records(out)}
    assert test_ids and not test_ids & val_ids and not test_ids & train_ids and not val_ids & train_ids
    # the test split takes from train only: val is the same records as without it
    assert val_ids == {i for i, _ in split_rows(runs["plain"], "val")}


def test_without_test_fraction_there_is_no_test_folder(runs):
    m = read_manifest(runs["plain"])
    assert m["test"] == {"records": 0, "shards": {}} and m["totals"]["test"] == 0
    assert not os.path.exists(os.path.join(runs["plain"], "parquet", "test"))


def test_tiny_classes_keep_a_train_record(tmp_path):
    corpus = write_parquet_corpus(str(tmp_path / "corpus"), sizes={"a": 50, "b": 2, "c": 1}, bad=False)
    m = run_job(corpus, tmp_path / "out", "--strategy", "oversample", "--holdout_fraction", "0.45",
                "--test_fraction", "0.5", "--output_format", "parquet")
    by = {c["label"]: c for c in m["classes"]}
    assert by["c"]["train_input"] == 1 and by["b"]["train_input"] >= 1
    assert {c["output"] for c in m["classes"]} == {by["a"]["train_input"]}  # all oversampled to the majority
    assert m["test"]["records"] + m["val"]["records"] == m["totals"]["holdout"]


def test_fractions_that_leave_nothing_to_train_on_are_refused(tmp_path):
    corpus = write_parquet_corpus(str(tmp_path / "corpus"), bad=False)
    with pytest.raises(ValueError, match=r"--holdout_fraction \+ --test_fraction must be under 1"):
        run_job(corpus, tmp_path / "out", "--holdout_fraction", "0.5", "--test_fraction", "0.5")
