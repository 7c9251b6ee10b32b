"""Files a pass writes for a later pass are named from their unit and rows, and written
atomically: a retried or recomputed unit writes the same files, byte for byte."""

from __future__ import annotations

import os

import numpy as np
from helpers import write_parquet_corpus

from pipelines.config import BalanceConfig
from pipelines.inputs.reading import CheckedVectors
from pipelines.outputs.fragments import FragmentWriter
from pipelines.passes import record_cache
from transforms import sources


def files(folder) -> dict[str, bytes]:
    return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))}


def test_a_unit_read_twice_writes_the_same_cache_files(tmp_path):
    pattern = write_parquet_corpus(str(tmp_path / "corpus"), files=1, row_group=2000)
    path = sorted(m for m in os.listdir(tmp_path / "corpus"))[0]
    cfg = BalanceConfig.of(input=pattern, output=str(tmp_path / "out"), input_format="parquet", batch_size=100)
    (unit,) = sources.list_units(str(tmp_path / "corpus" / path), "parquet")
    checked = CheckedVectors(cfg.read)
    results = []
    for attempt in ("first", "retry"):
        folder = tmp_path / attempt
        folder.mkdir()
        done = record_cache.read_into_cache(unit, checked, str(folder), cfg.holdout, False, 6)
        results.append((done, files(folder)))
    (first, a), (retry, b) = results
    assert a == b and len(a) == 2  # the same names and bytes: one file of valid, one of rejected records
    assert {n.split("-")[0] for n in a} == {"good", "rejected"}
    assert not any(".inprogress-" in n for n in a)
    assert (first.read, first.rejected) == (retry.read, retry.rejected) == (564, 6)
    # another unit with other rows gets other names
    other = record_cache.read_into_cache((unit[0], unit[1], 1), checked, str(tmp_path / "first"),
                                         cfg.holdout, False, 6)
    assert len(files(tmp_path / "first")) == 4 and other.read == first.read


def test_fragments_are_named_by_unit_flush_and_rows(tmp_path):
    rng = np.random.default_rng(0)
    n = 50
    cols = {"id": np.array([f"r{i}" for i in range(n)], object), "order": rng.integers(0, 2**63, n, dtype=np.uint64),
            "label": np.zeros(n, np.int32), "cluster": np.zeros(n, np.int32),
            "features": rng.normal(size=(n, 3)).astype(np.float32)}

    def write(folder, unit, rows):
        os.makedirs(folder, exist_ok=True)
        w = FragmentWriter(str(folder), flush_bytes=1, unit=unit)  # a flush per add
        w.add(("train", 0, 0), {k: v[rows] for k, v in cols.items()})
        w.add(("train", 0, 0), {k: v[rows][::-1] for k, v in cols.items()})
        return [os.path.basename(f.path) for _, f, _ in w.flush()]

    first = write(tmp_path / "a", "cache-1", slice(0, 40))
    assert write(tmp_path / "b", "cache-1", slice(0, 40)) == first and len(set(first)) == 2
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert set(write(tmp_path / "c", "cache-2", slice(0, 40))).isdisjoint(first)  # another unit
    assert set(write(tmp_path / "d", "cache-1", slice(0, 39))).isdisjoint(first)  # other rows
