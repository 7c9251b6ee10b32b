"""Seeded synthetic long-tailed corpora for benchmarks, written as Parquet in bounded memory.

    python -m benchmarks.make_corpus --rows 1000000 --dim 64 --classes 10 --ratio 100 \\
        --seed 0 --output benchmarks/data/corpus

Class c gets a share of the rows proportional to ratio**(-c / (classes - 1)) (so the
largest class is `ratio` times the smallest), with the total exactly `rows` (largest
remainder). Each class is a mixture of SUBCLUSTERS Gaussian blobs: random centres
(standard normal per coordinate), unit noise. Columns: `label` (string "c0".."c<C-1>")
and `features` (fixed_size_list<float32>[dim]); `--ids` adds a string column `id`.

Rows are generated one row group at a time: each chunk's class counts are drawn
from the rows still to be written (multivariate hypergeometric), so the classes are
interleaved at random and the totals are exact, and memory stays at one chunk.
Files are OUTPUT/part-NNNNN.parquet of about --rows_per_file rows. OUTPUT/_corpus.json
is written last: its presence means the corpus is complete (pyarrow.dataset skips
names that start with "_").
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SUBCLUSTERS = 4
ROW_GROUP = 65536
ROWS_PER_FILE = 1 << 20  # 16 row groups


def class_counts(rows: int, classes: int, ratio: float) -> np.ndarray:
    """Rows per class, proportional to ratio**(-c/(C-1)), summing exactly to `rows`."""
    if classes == 1:
        return np.array([rows], np.int64)
    share = float(ratio) ** (-np.arange(classes) / (classes - 1))
    exact = share / share.sum() * rows
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: rows - int(counts.sum())]] += 1
    return counts


def generate(
    rows: int,
    dim: int,
    classes: int,
    ratio: float,
    seed: int,
    output: str,
    ids: bool = False,
    row_group: int = ROW_GROUP,
    rows_per_file: int = ROWS_PER_FILE,
) -> dict:
    """Writes the corpus under `output`; returns its description (also OUTPUT/_corpus.json)."""
    rng = np.random.default_rng(seed)
    counts = class_counts(rows, classes, ratio)
    centres = rng.standard_normal((classes, SUBCLUSTERS, dim)).astype(np.float32)
    names = np.array([f"c{c}" for c in range(classes)], dtype=object)
    os.makedirs(output, exist_ok=True)
    for stale in os.listdir(output):
        if stale.endswith(".parquet") or stale == "_corpus.json":
            os.remove(os.path.join(output, stale))
    schema = pa.schema(
        [("label", pa.string()), ("features", pa.list_(pa.float32(), dim))]
        + ([("id", pa.string())] if ids else [])
    )
    groups_per_file = max(1, rows_per_file // row_group)
    remaining = counts.copy()
    writer, files, done, group = None, [], 0, 0
    while done < rows:
        n = min(row_group, rows - done)
        per_class = rng.multivariate_hypergeometric(remaining, n)
        remaining -= per_class
        label = rng.permutation(np.repeat(np.arange(classes), per_class))
        sub = rng.integers(0, SUBCLUSTERS, n)
        x = centres[label, sub] + rng.standard_normal((n, dim), dtype=np.float32)
        columns = [
            pa.array(names[label], pa.string()),
            pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim),
        ]
        if ids:
            columns.append(pa.array([f"r{i:012d}" for i in range(done, done + n)], pa.string()))
        if group % groups_per_file == 0:
            if writer is not None:
                writer.close()
            files.append(f"part-{len(files):05d}.parquet")
            writer = pq.ParquetWriter(os.path.join(output, files[-1]), schema)
        writer.write_table(pa.Table.from_arrays(columns, schema=schema), row_group_size=row_group)
        done += n
        group += 1
    if writer is not None:
        writer.close()
    info = {
        "rows": rows,
        "dim": dim,
        "classes": classes,
        "ratio": ratio,
        "seed": seed,
        "ids": ids,
        "subclusters": SUBCLUSTERS,
        "row_group": row_group,
        "files": files,
        "class_counts": {str(names[c]): int(counts[c]) for c in range(classes)},
    }
    with open(os.path.join(output, "_corpus.json"), "w") as f:
        json.dump(info, f, indent=2)
    return info


def is_complete(
    output: str, rows: int, dim: int, classes: int, ratio: float, seed: int, ids: bool = False
) -> bool:
    """Whether `output` already holds this exact corpus (its _corpus.json says so)."""
    try:
        with open(os.path.join(output, "_corpus.json")) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return False
    want = {"rows": rows, "dim": dim, "classes": classes, "ratio": ratio, "seed": seed, "ids": ids}
    return all(info.get(k) == v for k, v in want.items()) and all(
        os.path.exists(os.path.join(output, f)) for f in info["files"]
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.make_corpus", description=__doc__.split("\n\n")[1]
    )
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--ratio", type=float, default=100.0, help="largest class / smallest class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ids", action="store_true", help="add a string id column")
    ap.add_argument("--rows_per_file", type=int, default=ROWS_PER_FILE)
    ap.add_argument("--output", required=True)
    a = ap.parse_args()
    started = time.time()
    info = generate(
        a.rows, a.dim, a.classes, a.ratio, a.seed, a.output, a.ids, rows_per_file=a.rows_per_file
    )
    seconds = time.time() - started
    print(f"{a.rows} rows in {len(info['files'])} files under {a.output} ({seconds:.1f}s)")
    print("class counts: " + ", ".join(f"{k}={v}" for k, v in info["class_counts"].items()))


if __name__ == "__main__":
    main()
