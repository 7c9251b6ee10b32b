"""pipelines.histogram: the statistics of passes 1 to 3, equal to the balance manifest, no shards."""

from __future__ import annotations

import collections
import json
import logging
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import BAD_ROWS, SIZES, read_manifest, run_job, write_parquet_corpus

N_INPUT = sum(SIZES.values()) + len(BAD_ROWS)
FLAGS = ("--clusters_per_class", "3", "--holdout_fraction", "0.2", "--seed", "5")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_histogram(input_glob, out, *extra):
    from pipelines import histogram

    return histogram.run(["--input", input_glob, "--output", str(out), "--runner=FnApiRunner", *extra])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_parquet_corpus(str(tmp_path_factory.mktemp("hist") / "corpus"))


@pytest.fixture(scope="module")
def both(corpus, tmp_path_factory):
    """The histogram job and the balance job on the same input with the same flags."""
    root = tmp_path_factory.mktemp("both")
    doc = run_histogram(corpus, root / "hist", *FLAGS)
    run_job(corpus, root / "bal", *FLAGS, "--output_format", "parquet")
    return str(root / "hist"), doc, read_manifest(root / "bal")


def test_counts_are_the_corpus_counts(both):
    out, doc, _ = both
    with open(os.path.join(out, "histogram.json")) as f:
        assert json.load(f) == doc
    t = doc["totals"]
    assert t == {"read": N_INPUT, "rejected": len(BAD_ROWS), "holdout": t["holdout"], "val": t["holdout"],
                 "test": 0, "train_input": sum(SIZES.values()) - t["holdout"]}
    assert {c["label"]: c["input"] for c in doc["classes"]} == SIZES
    assert [c["index"] for c in doc["classes"]] == list(range(len(SIZES)))
    assert doc["rejected"]["by_label"] == dict(collections.Counter(str(label) for label, _, _ in BAD_ROWS))
    assert doc["imbalance_ratio"] == max(SIZES.values()) / min(SIZES.values())
    assert doc["input"]["format"] == "parquet" and doc["input"]["path"].endswith("*.parquet")
    assert doc["schema_version"] == 1 and doc["payload"] == {"kind": "features", "dim": 6}
    for c in doc["classes"]:
        assert c["holdout"] + c["train_input"] == c["input"]
        assert c["train_input"] >= 1


def test_cluster_sizes_sum_to_train_input(both):
    _, doc, _ = both
    for c in doc["classes"]:
        assert 1 <= len(c["clusters"]) <= 3
        assert sum(x["input"] for x in c["clusters"]) == c["train_input"]
        assert [x["id"] for x in c["clusters"]] == list(range(len(c["clusters"])))


def test_numbers_equal_the_balance_manifest(both):
    _, doc, m = both
    assert {k: v for k, v in m["totals"].items() if k != "output"} == doc["totals"]
    assert doc["plan"]["output"] == m["totals"]["output"]
    assert m["rejected"]["by_label"] == doc["rejected"]["by_label"]
    keys = ("label", "index", "input", "holdout", "train_input", "target")
    for h, c in zip(doc["classes"], m["classes"], strict=True):
        assert {k: h[k] for k in keys} == {k: c[k] for k in keys}
        assert h["clusters"] == [{k: x[k] for k in ("id", "input", "quota")} for x in c["clusters"]]
        assert doc["plan"]["targets"][h["label"]] == c["target"]
    # the Jo & Japkowicz target: max over classes of K_c x largest cluster, for every class
    jj = max(sum(1 for x in c["clusters"] if x["input"]) * max(x["input"] for x in c["clusters"])
             for c in doc["classes"])
    assert set(doc["plan"]["targets"].values()) == {jj}
    assert doc["plan"]["strategy"] == "cluster"


def test_writes_no_shards_and_a_valid_png(both):
    from PIL import Image

    out, _, _ = both
    assert sorted(os.listdir(out)) == ["histogram.json", "histogram.png"]  # no train/, val/, rejected/, .staging/
    with open(os.path.join(out, "histogram.png"), "rb") as f:
        assert f.read(8) == PNG_MAGIC
    with Image.open(os.path.join(out, "histogram.png")) as img:
        img.verify()
        assert img.format == "PNG" and min(img.size) > 100


def test_alternatives_equal_a_balance_run_with_that_strategy(both, corpus, tmp_path):
    _, doc, _ = both
    m = run_job(corpus, tmp_path / "over", *FLAGS, "--strategy", "oversample", "--output_format", "parquet")
    assert doc["alternatives"]["oversample"]["targets"] == {c["label"]: c["target"] for c in m["classes"]}
    assert doc["alternatives"]["oversample"]["output"] == m["totals"]["output"]
    train = {c["label"]: c["train_input"] for c in doc["classes"]}
    assert doc["alternatives"]["undersample"]["targets"] == {k: min(train.values()) for k in train}


def test_random_strategy_has_no_clusters(corpus, tmp_path):
    doc = run_histogram(corpus, tmp_path / "h", *FLAGS, "--strategy", "undersample")
    assert all("clusters" not in c for c in doc["classes"])
    assert doc["plan"]["strategy"] == "undersample"
    assert doc["plan"]["targets"] == doc["alternatives"]["undersample"]["targets"]


def test_a_spec_that_does_not_fit_still_writes_the_histogram(tmp_path, capsys):
    single = tmp_path / "one"
    single.mkdir()
    pq.write_table(pa.table({"label": ["a"] * 5, "features": [[1.0, 2.0]] * 5}), single / "x.parquet")
    doc = run_histogram(str(single), tmp_path / "h")
    assert doc["totals"]["read"] == 5 and [c["label"] for c in doc["classes"]] == ["a"]
    assert "single class" in doc["plan"]["error"]
    assert "would stop: The corpus has a single class" in capsys.readouterr().out


def test_progress_lines_name_the_pass(corpus, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pipelines")
    run_histogram(corpus, tmp_path / "h", "--clusters_per_class", "2", "--progress_seconds", "0")
    lines = [r.getMessage() for r in caplog.records]
    for name in ("pass 1/3 (class counts)", "pass 2/3 (k-means sample)", "pass 3/3 (cluster histograms)"):
        assert any(x.startswith(f"{name}: ") and "records read so far" in x for x in lines), name
        assert f"{name}: done, {N_INPUT:,} records read" in lines


def test_help_and_errors(tmp_path, corpus):
    from pipelines import histogram

    text = histogram.parser().format_help()
    assert "histogram.json" in text and "--clusters_per_class" in text and "--progress_seconds" in text
    with pytest.raises(ValueError, match="--output is required with --input"):
        histogram.run(["--input", corpus])
    with pytest.raises(ValueError, match="--progress_seconds must be 0 or more. Received: -1"):
        run_histogram(corpus, tmp_path / "h", "--progress_seconds", "-1")
    with pytest.raises(ValueError, match=r"^--target_counts values must be integers >= 1. Received: 'a': 2.5"):
        run_histogram(corpus, tmp_path / "h", "--target_counts", '{"a": 2.5, "b": 3}')
    with pytest.raises(ValueError, match="--strategy none passes the corpus through"):
        run_histogram(corpus, tmp_path / "h", "--strategy", "none", "--target", "5")
    assert not os.path.exists(tmp_path / "h")  # checked before anything ran


def test_demo_corpus(tmp_path, capsys):
    from pipelines import histogram

    doc = histogram.run(["--demo_dir", str(tmp_path / "demo"), "--runner=FnApiRunner"])
    out = tmp_path / "demo" / "histogram"
    assert sorted(os.listdir(out)) == ["histogram.json", "histogram.png"]
    assert doc["payload"]["kind"] == "image" and doc["totals"]["read"] == 565 and doc["totals"]["rejected"] == 2
    assert doc["imbalance_ratio"] >= 20
    printed = capsys.readouterr().out
    assert "read 565 = rejected 2" in printed and "histogram.json" in printed and str(out) in printed
