"""3,000 classes of a few rows each: exact quotas, a manifest that matches the files, and a
number of staging files that grows with the bytes, not with classes x cache files."""

from __future__ import annotations

import collections
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from helpers import read_manifest, run_job, train_records

CLASSES = 3000


def test_three_thousand_classes(tmp_path, monkeypatch):
    from pipelines.outputs import fragments

    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 9, CLASSES)  # 1 to 8 rows a class
    labels = np.repeat([f"k{i:04d}" for i in range(CLASSES)], sizes)
    x = rng.normal(size=(len(labels), 4)).astype(np.float32)
    os.makedirs(tmp_path / "in")
    for part, rows in enumerate(np.array_split(rng.permutation(len(labels)), 3)):  # three units
        pq.write_table(pa.table({"label": labels[rows], "features": pa.FixedSizeListArray.from_arrays(
            pa.array(x[rows].ravel()), 4)}), tmp_path / "in" / f"part-{part}.parquet")
    written, real = [], fragments.write_ipc

    def counted(path, tables, random_access=True):
        written.append(path)
        return real(path, tables, random_access)

    monkeypatch.setattr(fragments, "write_ipc", counted)
    out = tmp_path / "out"
    m = run_job(str(tmp_path / "in" / "*.parquet"), out, "--strategy", "hybrid", "--target", "median",
                "--output_format", "parquet")
    assert len(m["classes"]) == CLASSES and m["totals"]["read"] == len(labels)
    assert len({c["target"] for c in m["classes"]}) == 1  # every class to the median
    counts = collections.Counter(label for _, label, _ in train_records(out))
    assert counts == {c["label"]: c["output"] for c in m["classes"]}  # every class's files hold its quota
    for c in m["classes"]:
        assert c["output"] == c["target"] == sum(k["quota"] for k in c["clusters"])
        assert sum(s["records"] for s in c["shards"]["parquet"]) == c["output"]
    assert read_manifest(out) == m
    cache = [p for p in written if "/cache/" in p]
    # fragments: a file per flush of each cache file (and of the boundary and rejected
    # writers), not one per class and cache file (which would be about 3 x 3,000)
    assert 0 < len(written) - len(cache) <= 20, len(written) - len(cache)
