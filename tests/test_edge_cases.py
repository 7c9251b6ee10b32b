"""Edge cases with clear behaviour: identical records, 1,000 classes, empty input."""

from __future__ import annotations

import collections
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import run_job, train_records
from PIL import Image

from pipelines.outputs.report import MAX_TICK_LABELS


def test_a_corpus_of_identical_records(tmp_path):
    """Every record the same vector: one cluster per class, exact targets, counts reconcile."""
    labels = ["a"] * 300 + ["b"] * 7
    pq.write_table(pa.table({"label": labels, "features": [[0.5, 0.5, 0.5]] * len(labels)}),
                   tmp_path / "x.parquet")
    m = run_job(str(tmp_path / "x.parquet"), tmp_path / "out", "--output_format", "parquet")
    t = m["totals"]
    assert t["read"] == 307 == t["rejected"] + t["holdout"] + t["train_input"]
    for c in m["classes"]:
        assert sum(1 for x in c["clusters"] if x["input"]) == 1
        assert c["output"] == c["target"]
    assert collections.Counter(r[1] for r in train_records(tmp_path / "out")) == {
        c["label"]: c["output"] for c in m["classes"]}


@pytest.mark.slow  # make test: tests/test_many_classes.py (3,000 classes), tests/test_rank_plots.py (the PNG)
def test_a_thousand_classes(tmp_path):
    rows = [(f"class {i:04d}", [float(i), float(j)]) for i in range(1000) for j in range(3 if i else 40)]
    pq.write_table(pa.table({"label": [r[0] for r in rows], "features": [r[1] for r in rows]}),
                   tmp_path / "x.parquet")
    m = run_job(str(tmp_path / "x.parquet"), tmp_path / "out", "--output_format", "parquet",
                "--clusters_per_class", "2", "--holdout_fraction", "0")
    assert len(m["classes"]) == 1000 and m["totals"]["read"] == len(rows)
    assert len(os.listdir(tmp_path / "out" / "parquet" / "train")) == 1000
    assert {c["output"] for c in m["classes"]} == {m["classes"][0]["target"]}  # every class to one T
    counts = collections.Counter(r[1] for r in train_records(tmp_path / "out"))
    assert counts == {c["label"]: c["output"] for c in m["classes"]}
    with Image.open(tmp_path / "out" / "report.png") as png:  # a rank plot: one size at any class count
        assert png.format == "PNG" and 700 < png.size[0] <= 90 * (0.5 * MAX_TICK_LABELS + 6)


def test_empty_input_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    pq.write_table(pa.table({"label": pa.array([], pa.string()),
                             "features": pa.array([], pa.list_(pa.float32()))}), empty / "x.parquet")
    with pytest.raises(Exception, match="has no records with features"):
        run_job(str(empty), tmp_path / "o1")
    assert not (tmp_path / "o1" / "manifest.json").exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(pa.table({"label": ["a", None], "features": [[float("nan")], [1.0]]}), bad / "x.parquet")
    with pytest.raises(Exception, match="no valid training records"):
        run_job(str(bad), tmp_path / "o2")
