"""Micro-benchmark of the job's shard writers on one in-memory shard: TFRecord vs Parquet.

    python -m benchmarks.bench_tfrecord --rows 1000000 --dim 64

Builds a table shaped like pipelines.outputs.formats.output_table's (id: 16-hex string,
label int64, label_text, cluster int32 in 0..7, features fixed_size_list<float32>[D];
one class, as a train shard) and times, on it:

  encode    transforms.example_codec.encode_tfrecords (Examples + TFRecord framing)
  gzip      gzip_bytes of the encoded bytes (stored deflate blocks)
  tfrecord  pipelines.outputs.formats.tfrecord_bytes, the job's whole TFRecord writer
  parquet   pipelines.outputs.formats.parquet_bytes, the job's Parquet writer

and prints rows/s and MB/s of each (best of --repeat runs).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa

from pipelines.outputs.formats import gzip_bytes, parquet_bytes, tfrecord_bytes
from transforms import example_codec, hashing


def shard_table(rows: int, dim: int, seed: int = 0) -> pa.Table:
    """A train shard as output_table returns it."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, dim), dtype=np.float32)
    ids = hashing.hex_ids(rng.integers(0, 2**63, rows, dtype=np.uint64))
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "label": pa.array(np.zeros(rows, np.int64)),
            "label_text": pa.array(np.full(rows, "c0", dtype=object), pa.string()),
            "cluster": pa.array(rng.integers(0, 8, rows).astype(np.int32)),
            "features": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim),
        }
    )


def best_of(repeat: int, fn):
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def run(rows: int, dim: int, repeat: int = 1) -> list[dict]:
    table = shard_table(rows, dim)
    ids = np.asarray(table.column("id").to_pylist(), dtype=object)
    clusters = table.column("cluster").to_numpy()
    x = table.column("features").combine_chunks().flatten().to_numpy().reshape(-1, dim)

    def encode() -> bytes:
        return example_codec.encode_tfrecords(ids, 0, "c0", clusters, floats={"features": x})

    encoded = encode()
    steps = [
        ("encode", encode),
        ("gzip", lambda: gzip_bytes([encoded])),
        ("tfrecord_bytes", lambda: tfrecord_bytes(table)),
        ("parquet_bytes", lambda: parquet_bytes(table)),
    ]
    results = []
    for step, fn in steps:
        t, out = best_of(repeat, fn)
        results.append(
            {"step": step, "rows": rows, "seconds": t, "bytes": len(out), "rows_per_s": rows / t}
        )
    return results


def table_markdown(results: list[dict]) -> str:
    lines = [
        "| step | rows | s | rows/s | output MB | MB/s out |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        mb = r["bytes"] / 1e6
        lines.append(
            f"| {r['step']} | {r['rows']} | {r['seconds']:.2f} | {r['rows_per_s']:,.0f} | "
            f"{mb:.0f} | {mb / r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_tfrecord", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=1, help="runs per step; the best is reported")
    a = ap.parse_args()
    print(table_markdown(run(a.rows, a.dim, a.repeat)))


if __name__ == "__main__":
    main()
