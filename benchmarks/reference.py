"""The work of pipelines.balance done the direct way: one process, everything in memory.

    python -m benchmarks.reference --input benchmarks/data/CORPUS --output benchmarks/runs/ref

Reads every Parquet file under --input (columns `label`, `features`
fixed_size_list<float32>[D], optional `id`), then, with the job's defaults
(--strategy cluster --target max or --target, k = 8, 100k-row k-means samples, 10% hold-out,
seed 0):

1. keys: hash of `id` if present, else of (label, feature bytes), as the job does;
2. hold-out: rows whose hold-out hash is under 10% go to val/ (each class's row with
   the largest hash stays in train);
3. per class: the 100k train rows with the smallest sample hash, MiniBatchKMeans
   (k=8, batch 32768, n_init=3) on them, every train row assigned to its nearest
   centroid;
4. Jo & Japkowicz: T = max over classes of K_c x largest cluster of c; each cluster
   gets T / K_c by largest remainder; a cluster of n rows with quota q writes every
   row q // n times and once more for the q % n rows with the smallest copy hash;
5. one Parquet file per class, train/class=<label>/part-00000-of-00001.parquet, rows
   in a hash order (shuffled), and val/part-00000-of-00001.parquet; summary.json.

It reuses the project's hash, k-means and quota functions (transforms/), so its
output counts equal the job's exactly and a comparison of the two measures the
execution engine, not the algorithm. Prints the time of each step.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms import hashing, kmeans, plan, selection

ASSIGN_BATCH = 65536  # rows per nearest-centroid matmul (float64), bounds its memory


class Clock:
    """Prints the seconds each step took."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.steps: dict[str, float] = {}

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        self.steps[step] = round(now - self.last, 3)
        print(f"  {step:<22} {now - self.last:7.2f}s", flush=True)
        self.last = now


def sort_labels(labels) -> list[str]:
    """Integer labels in numeric order, others in text order (as pipelines.outputs.layout)."""
    labels = list(labels)
    if labels and all(re.fullmatch(r"-?\d+", x) for x in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def read_corpus(folder: str) -> tuple[np.ndarray, np.ndarray, list[str], pa.Array | None]:
    """(features float32[N, D], class code per row, class labels, ids or None)."""
    files = sorted(glob.glob(os.path.join(folder, "**", "*.parquet"), recursive=True))
    if not files:
        raise SystemExit(f"no .parquet file under {folder}")
    tables = [pq.read_table(f) for f in files]
    table = pa.concat_tables(tables)
    del tables
    dim = table.schema.field("features").type.list_size
    x = table.column("features").combine_chunks().flatten().to_numpy().reshape(-1, dim)
    encoded = pc.dictionary_encode(table.column("label")).combine_chunks()
    labels = sort_labels(encoded.dictionary.to_pylist())
    remap = np.array([labels.index(v) for v in encoded.dictionary.to_pylist()], np.int64)
    codes = remap[encoded.indices.to_numpy()]
    ids = table.column("id").combine_chunks() if "id" in table.column_names else None
    return x, codes, labels, ids


def keys_and_ids(x, codes, labels, ids) -> tuple[np.ndarray, np.ndarray]:
    """The job's record keys (uint64) and ids (str): content hashes when there is no id."""
    if ids is not None:
        return hashing.hash_strings(ids), np.asarray(ids.to_pylist(), dtype=object)
    keys = hashing.content_keys(np.asarray(labels, dtype=object)[codes], x)
    return keys, hashing.hex_ids(keys)


def holdout(keys, codes, n_classes: int, fraction: float, seed: int) -> np.ndarray:
    """True for val/ rows: hold-out hash under the threshold, except each class's top row."""
    hold = hashing.decision(keys, seed, hashing.HOLDOUT)
    top = np.zeros(n_classes, np.uint64)
    np.maximum.at(top, codes, hold)
    return (hold < hashing.fraction_threshold(fraction)) & (hold != top[codes])


def fit_class(x, keys, rows, label: str, k: int, m: int, seed: int) -> np.ndarray:
    """Centroids of one class, fitted on its m train rows with the smallest sample hash."""
    s = hashing.decision(keys[rows], seed, hashing.SAMPLE)
    pick = np.argpartition(s, m - 1)[:m] if len(rows) > m else np.arange(len(rows))
    pick = pick[np.argsort(s[pick], kind="stable")]  # hash order, as the job's sample
    return kmeans.fit_centroids(x[rows[pick]], k, lambda: hashing.seed_for(seed, label))


def assign(x, rows, centroids) -> np.ndarray:
    return np.concatenate(
        [
            kmeans.assign(x[rows[i : i + ASSIGN_BATCH]], centroids)
            for i in range(0, len(rows), ASSIGN_BATCH)
        ]
        or [np.zeros(0, np.int32)]
    )


def write_parquet(path: str, ids, label: int, label_text: str, cluster, x) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    n = len(ids)
    table = pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "label": pa.array(np.full(n, label) if np.isscalar(label) else label, pa.int64()),
            "label_text": pa.array(
                np.full(n, label_text, dtype=object) if isinstance(label_text, str) else label_text,
                pa.string(),
            ),
            "cluster": pa.array(cluster, pa.int32()),
            "features": pa.FixedSizeListArray.from_arrays(
                pa.array(np.ascontiguousarray(x).ravel()), x.shape[1]
            ),
        }
    )
    pq.write_table(table, path, compression="snappy", row_group_size=64 * 1024)


def run(
    input_dir: str, output: str, k: int = 8, m: int = 100_000, fraction: float = 0.1, seed: int = 0,
    target: str | None = None,
) -> dict:
    clock = Clock()
    x, codes, labels, ids = read_corpus(input_dir)
    clock("read")
    keys, idstr = keys_and_ids(x, codes, labels, ids)
    clock("keys")
    held = holdout(keys, codes, len(labels), fraction, seed)
    by_class = [np.flatnonzero((codes == c) & ~held) for c in range(len(labels))]
    clock("hold-out")
    centroids = [fit_class(x, keys, rows, labels[c], k, m, seed) for c, rows in enumerate(by_class)]
    clock("k-means fit")
    clusters = [assign(x, rows, centroids[c]) for c, rows in enumerate(by_class)]
    clock("assign")
    sizes = {
        labels[c]: np.bincount(clusters[c], minlength=len(centroids[c])) for c in range(len(labels))
    }
    plans = plan.plan_quotas(sizes, "cluster", plan.parse_target(target))
    clock("plan")
    summary = {"classes": [], "val": int(held.sum())}
    for c, cp in enumerate(plans):
        rows, cl = by_class[c], clusters[c]
        copies = np.zeros(len(rows), np.int64)
        for j, quota in enumerate(cp.quotas):
            in_j = np.flatnonzero(cl == j)
            u = hashing.decision(keys[rows[in_j]], seed, hashing.COPIES)
            copies[in_j] = selection.exact_copies(u, idstr[rows[in_j]], quota)
        rep = np.repeat(np.arange(len(rows)), copies)
        copy_index = np.arange(len(rep)) - np.repeat(np.cumsum(copies) - copies, copies)
        base = hashing.decision(keys[rows[rep]], seed, hashing.SHARD)
        order = np.argsort(hashing.mix64(base + copy_index.astype(np.uint64)), kind="stable")
        rep = rep[order]
        safe = re.sub(r"[^\w.-]", "_", cp.label).strip(".") or "_"
        write_parquet(
            os.path.join(output, "train", f"class={safe}", "part-00000-of-00001.parquet"),
            idstr[rows[rep]],
            c,
            cp.label,
            cl[rep],
            x[rows[rep]],
        )
        summary["classes"].append(
            {
                "label": cp.label,
                "input": int((codes == c).sum()),
                "train_input": cp.train_input,
                "target": cp.target,
                "output": int(len(rep)),
                "clusters": [
                    {"id": j, "input": n, "quota": q}
                    for j, (n, q) in enumerate(zip(cp.cluster_sizes, cp.quotas, strict=True))
                ],
            }
        )
    val = np.flatnonzero(held)
    val = val[np.argsort(hashing.decision(keys[val], seed, hashing.SHARD), kind="stable")]
    write_parquet(
        os.path.join(output, "val", "part-00000-of-00001.parquet"),
        idstr[val],
        codes[val],
        np.asarray(labels, dtype=object)[codes[val]],
        np.full(len(val), -1),
        x[val],
    )
    clock("resample + write")
    summary["output"] = sum(c["output"] for c in summary["classes"])
    summary["seconds"] = clock.steps
    with open(os.path.join(output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(
        f"  total {time.perf_counter() - clock.start:.2f}s: {len(x)} rows read, "
        f"{summary['val']} held out, {summary['output']} written"
    )
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.reference",
        description="One-process, in-memory reference of pipelines.balance.",
    )
    ap.add_argument("--input", required=True, help="folder of Parquet files")
    ap.add_argument("--output", required=True)
    ap.add_argument("--clusters_per_class", type=int, default=8)
    ap.add_argument("--kmeans_sample", type=int, default=100_000)
    ap.add_argument("--holdout_fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", default=None, help="as the job's --target (default: max, Jo & Japkowicz)")
    a = ap.parse_args()
    run(a.input, a.output, a.clusters_per_class, a.kmeans_sample, a.holdout_fraction, a.seed, a.target)


if __name__ == "__main__":
    main()
