"""Shard writing in two steps, so that memory stays bounded and files are deterministic.

1. Workers buffer their output rows per destination (split, class, shard) and
   flush them as *fragments* (Arrow IPC streams) into OUT/.staging/RUN/, a few MB
   each; a bundle that is retried leaves orphan fragments that nobody lists.
2. One merge per destination reads its fragments (at most one shard's worth of
   rows), sorts them by their order key (a hash of id, copy and seed) and writes
   the final Parquet and/or gzipped TFRecord file under a temporary name, then
   renames it into place.

So shard contents depend only on (records, seed), never on bundling or runner.
All paths go through Beam's FileSystems (local disk, gs://, ...).
"""

from __future__ import annotations

import gzip
import io
import json
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms import example_codec

STAGING = ".staging"
FLUSH_BYTES = 32 << 20  # buffered bytes per worker before fragments are flushed
GZIP_LEVEL = 1  # float data barely compresses; level 1 keeps the writer fast


def row_schema(dim: int) -> pa.Schema:
    """Fragment rows of train/ and val/."""
    return pa.schema([
        ("id", pa.string()),
        ("order", pa.uint64()),
        ("label", pa.int32()),
        ("cluster", pa.int32()),
        ("features", pa.list_(pa.float32(), dim)),
    ])


REJECTED_SCHEMA = pa.schema([
    ("source", pa.string()),
    ("row", pa.int64()),
    ("id", pa.string()),
    ("label", pa.string()),
    ("reason", pa.string()),
])


def rows_table(ids, order, label, cluster, features: np.ndarray) -> pa.Table:
    dim = features.shape[1]
    feats = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(features, np.float32).ravel()), dim)
    return pa.Table.from_arrays(
        [pa.array(ids, pa.string()), pa.array(order, pa.uint64()), pa.array(label, pa.int32()),
         pa.array(cluster, pa.int32()), feats],
        schema=row_schema(dim),
    )


def rejected_table(batch: dict) -> pa.Table:
    return pa.Table.from_arrays(
        [pa.array(batch["source"], pa.string()), pa.array(batch["row"], pa.int64()),
         pa.array(batch["id"], pa.string()), pa.array(batch["label"], pa.string()),
         pa.array(batch["reason"], pa.string())],
        schema=REJECTED_SCHEMA,
    )


def create(path: str):
    return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)


def open_read(path: str):
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def mkdirs(path: str) -> None:
    try:
        FileSystems.mkdirs(path)
    except OSError:
        pass  # exists already


def delete(paths: list[str]) -> None:
    existing = [p for p in paths if FileSystems.exists(p)]
    if existing:
        FileSystems.delete(existing)


class FragmentWriter:
    """Buffers tables per destination; flushes them as fragment files."""

    def __init__(self, staging: str, flush_bytes: int = FLUSH_BYTES):
        self.staging = staging
        self.flush_bytes = flush_bytes
        self.buffers: dict[tuple, list[pa.Table]] = {}
        self.buffered = 0
        self.written: list[tuple[tuple, str, int]] = []

    def add(self, dest: tuple, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self.buffers.setdefault(dest, []).append(table)
        self.buffered += table.nbytes
        if self.buffered >= self.flush_bytes:
            self.flush()

    def drain(self) -> list[tuple[tuple, str, int]]:
        """Fragments written (by automatic flushes) since the last drain."""
        done, self.written = self.written, []
        return done

    def flush(self) -> list[tuple[tuple, str, int]]:
        """Writes every buffer; returns all fragments written since the last drain."""
        for dest, tables in self.buffers.items():
            table = pa.concat_tables(tables)
            path = FileSystems.join(self.staging, f"{'-'.join(map(str, dest))}-{uuid.uuid4().hex}.arrow")
            with create(path) as f, pa.ipc.new_stream(f, table.schema) as w:
                w.write_table(table)
            self.written.append((dest, path, table.num_rows))
        self.buffers.clear()
        self.buffered = 0
        return self.drain()


def read_fragments(paths: list[str]) -> pa.Table:
    tables = []
    for path in sorted(paths):
        with open_read(path) as f:
            tables.append(pa.ipc.open_stream(f).read_all())
    return pa.concat_tables(tables)


def sort_rows(table: pa.Table) -> pa.Table:
    """Deterministic order inside a shard: by order key, then id."""
    return table.sort_by([("order", "ascending"), ("id", "ascending")])


def output_table(table: pa.Table, labels: list[str]) -> pa.Table:
    """The shard's columns, in the contract's names (see DESIGN.md)."""
    label = table.column("label").cast(pa.int64())
    text = pa.array([labels[i] for i in label.to_numpy()] if table.num_rows else [], pa.string())
    return pa.table({
        "id": table.column("id"),
        "label": label,
        "label_text": text,
        "cluster": table.column("cluster"),
        "features": table.column("features"),
    })


def write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.inprogress-{uuid.uuid4().hex}"
    with create(tmp) as f:
        f.write(data)
    FileSystems.rename([tmp], [path])


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy", row_group_size=64 * 1024)
    return buf.getvalue()


def tfrecord_bytes(table: pa.Table, dim: int) -> bytes:
    """Gzipped TFRecord of tf.train.Example rows (id, label, label_text, cluster, features)."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0, filename="") as gz:
        if table.num_rows:
            labels = table.column("label").to_numpy()
            texts = table.column("label_text").to_pylist()
            ids = np.asarray(table.column("id").to_pylist(), dtype=object)
            clusters = table.column("cluster").to_numpy()
            x = table.column("features").combine_chunks().flatten().to_numpy().reshape(-1, dim)
            # A shard holds one class (train) or several (val): encode per label.
            for lab in np.unique(labels):
                rows = np.flatnonzero(labels == lab)
                gz.write(example_codec.encode_tfrecords(
                    ids[rows], int(lab), texts[rows[0]], clusters[rows], floats={"features": x[rows]}))
    return raw.getvalue()


def jsonl_bytes(table: pa.Table) -> bytes:
    table = table.sort_by([("source", "ascending"), ("row", "ascending")])
    lines = [json.dumps(r, ensure_ascii=False) for r in table.to_pylist()]
    return ("\n".join(lines) + ("\n" if lines else "")).encode()


def shard_name(index: int, count: int) -> str:
    return f"part-{index:05d}-of-{count:05d}"
