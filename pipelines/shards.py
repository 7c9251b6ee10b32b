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

import hashlib
import io
import json
import logging
import struct
import zlib
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from transforms import example_codec, storage
from transforms.records import REJECTED_SCHEMA, jsonl_bytes, rejected_table  # noqa: F401 - shards' names too

STAGING = ".staging"
FLUSH_BYTES = 64 << 20  # buffered bytes per worker before fragments are flushed
ENCODE_ROWS = 16384  # rows encoded per call when writing TFRecord


def row_schema(payload: dict[str, int | None]) -> pa.Schema:
    """Fragment rows of train/ and val/; payload: column -> vector length (None: not a vector)."""
    fields = [("id", pa.string()), ("order", pa.uint64()), ("label", pa.int32()), ("cluster", pa.int32())]
    for name, dim in payload.items():
        fields.append((name, pa.list_(pa.float32(), dim) if dim else PAYLOAD_TYPES[name]))
    return pa.schema(fields)


PAYLOAD_TYPES = {"image": pa.binary(), "format": pa.string()}


def rows_table(id, order, label, cluster, **payload) -> pa.Table:  # noqa: A002
    """Fragment rows: id, order, label, cluster and the payload columns (vectors or bytes)."""
    arrays = [pa.array(id, pa.string()), pa.array(order, pa.uint64()), pa.array(label, pa.int32()),
              pa.array(cluster, pa.int32())]
    dims = {}
    for name, values in payload.items():
        if name in PAYLOAD_TYPES:
            arrays.append(pa.array(values, PAYLOAD_TYPES[name]))
            dims[name] = None
        else:
            arrays.append(vector_array(values))
            dims[name] = values.shape[1]
    return pa.Table.from_arrays(arrays, schema=row_schema(dims))


def vector_array(x: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(x, np.float32).ravel()), x.shape[1])


def rejected_by_label(table: pa.Table) -> dict[str, int]:
    """Rejected records per label, as the manifest's rejected.by_label counts them."""
    labels, counts = np.unique([str(v) for v in table.column("label").to_pylist()], return_counts=True)
    return {str(k): int(n) for k, n in zip(labels, counts, strict=True)}


def mkdirs(path: str) -> None:
    try:
        FileSystems.mkdirs(path)
    except OSError:
        pass  # exists already


def delete(paths: list[str]) -> None:
    storage.delete(paths)


def stable_name(unit, seq: int, tables: list[pa.Table]) -> str:
    """A staging file's name part, from what it holds: the unit it came from (None where a
    bundle's elements are not one unit), its place among that unit's files, and its rows'
    identities (the columns key, order, row and source, when present: 8 bytes or so a row).

    A retried or recomputed bundle writes the same rows in the same order, so the same
    names. The job's writers name their unit (a cache file's name, an input unit, a
    boundary group) wherever the work has one; only the rejected records of a bundle go
    without (their source and row identify each record). `key` and `order` hash a
    record's id with its content, so two files of one unit and flush share a name only if
    they hold the same records."""
    h = hashlib.blake2b(repr((unit, seq)).encode(), digest_size=12)
    for table in tables:
        h.update(struct.pack("<q", table.num_rows))
        for name in ("key", "order", "row"):
            if name in table.column_names:
                h.update(np.ascontiguousarray(table.column(name).to_numpy()).tobytes())
        if "source" in table.column_names:
            h.update("\x00".join(map(str, table.column("source").to_pylist())).encode())
    return h.hexdigest()


class FragmentWriter:
    """Buffers rows per destination (split, class, shard); flushes them as fragment files,
    named by `stable_name` (from `unit`, the flush and the rows) and written atomically.

    Rows arrive as columns (numpy arrays); a table is built once per fragment.
    """

    def __init__(self, staging: str, flush_bytes: int | None = None, unit=None):
        self.staging, self.unit, self.flushes = staging, unit, 0
        self.flush_bytes = flush_bytes or FLUSH_BYTES
        self.buffers: dict[tuple, list[dict]] = {}
        self.buffered = 0
        self.written: list[tuple[tuple, str, int]] = []

    def add(self, dest: tuple, columns: dict) -> None:
        """Rows for one destination: {"id", "order", "label", "cluster", "features"} or rejected columns."""
        n = len(next(iter(columns.values())))
        if n == 0:
            return
        self.buffers.setdefault(dest, []).append(columns)
        self.buffered += sum(getattr(v, "nbytes", 8 * n) for v in columns.values())
        if self.buffered >= self.flush_bytes:
            self._write()

    def add_split(self, split: str, index: int, shard: np.ndarray, columns: dict) -> None:
        """Rows of one class (or val) spread over shards: one sort, one gather per column,
        then a slice (a view) per shard.

        `columns`: name -> an array with one value per row, or (array, rows) for array[rows]
        (gathered once, straight into shard order)."""
        order = np.argsort(shard, kind="stable")
        ordered = shard[order]
        gathered = {k: v[0][v[1][order]] if isinstance(v, tuple) else v[order] for k, v in columns.items()}
        bounds = [0, *(np.flatnonzero(np.diff(ordered)) + 1).tolist(), len(ordered)]
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            if b > a:
                self.add((split, index, int(ordered[a])), {k: v[a:b] for k, v in gathered.items()})

    def drain(self) -> list[tuple[tuple, str, int]]:
        """Fragments written since the last drain."""
        done, self.written = self.written, []
        return done

    def flush(self) -> list[tuple[tuple, str, int]]:
        """Writes every buffer; returns all fragments written since the last drain."""
        self._write()
        return self.drain()

    def _write(self) -> None:
        for dest, parts in self.buffers.items():
            # One record batch per buffered part: the merge reads them as one table, so
            # nothing is concatenated here.
            tables = [rejected_table(p) if dest[0] == "rejected" else rows_table(**p) for p in parts]
            name = stable_name((self.unit, dest), self.flushes, tables)
            path = FileSystems.join(self.staging, f"{'-'.join(map(str, dest))}-{name}.arrow")
            write_ipc(path, tables)
            self.written.append((dest, path, sum(t.num_rows for t in tables)))
        self.buffers.clear()
        self.buffered = 0
        self.flushes += 1


def write_ipc(path: str, tables: list[pa.Table]) -> None:
    """Tables of one schema as one Arrow IPC stream (a staging file), one after another, uncopied;
    never seen half-written (`storage.writing`)."""
    with storage.writing(path) as f, pa.ipc.new_stream(f, tables[0].schema) as w:
        for table in tables:
            w.write_table(table)


def read_fragments(paths: list[str]) -> pa.Table:
    tables = []
    for path in sorted(paths):
        with storage.open_read(path) as f:
            tables.append(pa.ipc.open_stream(f).read_all())
    return pa.concat_tables(tables)


def output_table(table: pa.Table, labels: list[str], by_label: bool = False) -> pa.Table:
    """The shard's rows in their deterministic order, with the contract's columns.

    Order: by the order key (a hash of id, copy and seed); rows that tie on it are
    copies of the same record. `by_label` (val shards, which hold every class) sorts by
    label first, so the TFRecord writer encodes each class in one run. The features
    are gathered with numpy, not Arrow's take.
    """
    keys = [table.column("order").to_numpy()]
    if by_label:
        keys.append(table.column("label").to_numpy())
    order = np.lexsort(keys)
    label = table.column("label").to_numpy()[order].astype(np.int64)
    out = {
        "id": table.column("id").take(pa.array(order)),
        "label": pa.array(label, pa.int64()),
        "label_text": pa.array(labels, pa.string()).take(pa.array(label)),
        "cluster": pa.array(table.column("cluster").to_numpy()[order], pa.int32()),
    }
    for name in table.column_names[4:]:
        col = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            dim = col.type.list_size
            x = col.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)[order]
            out[name] = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim)
        else:
            out[name] = col.take(pa.array(order))
    return pa.table(out)


def write_plot_then_document(out: str, png: str, plot, name: str, doc: dict) -> None:
    """OUT/png drawn by `plot(doc, path)` (a failed plot is a warning, never a lost result),
    then OUT/name, the JSON document, atomically."""
    try:
        plot(doc, FileSystems.join(out, png))
    except Exception as e:  # noqa: BLE001 - a missing plot must not lose the numbers
        logging.getLogger("pipelines.balance").warning("%s not written: %s", png, e)
    write_atomic(FileSystems.join(out, name), json.dumps(doc, indent=2, ensure_ascii=False).encode())


def write_atomic(path: str, data: bytes | Callable) -> None:
    """`data` (bytes, or a function that writes to a file) into `path`, whole or not at all
    (transforms/storage.py: `write_bytes`, `writing`)."""
    if not callable(data):
        storage.write_bytes(path, data)
        return
    with storage.writing(path) as f:
        data(f)


RAW_COLUMNS = ("features", "embedding", "image")  # float vectors, encoded images: compression gains ~1%


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    write_parquet(table, buf)
    return buf.getvalue()


def write_parquet(table: pa.Table, sink) -> None:
    """One Parquet file into `sink` (a path or a file): 64k-row row groups; snappy and
    statistics for the scalar columns only.

    Float vectors barely compress (snappy saved 1.4% of a 64-float shard for half the
    write time) and encoded images are compressed already; min/max statistics of a
    vector's elements serve no filter. Dictionary encoding only where values repeat:
    on float features it costs a third of the write time and is dropped anyway.
    """
    scalars = [c for c in table.column_names if c not in RAW_COLUMNS]
    pq.write_table(table, sink, row_group_size=64 * 1024,
                   compression={c: "snappy" if c in scalars else "none" for c in table.column_names},
                   write_statistics=scalars,
                   use_dictionary=[c for c in ("label_text", "cluster", "format") if c in table.column_names])


GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate; no name, time 0, OS unknown
STORED_BLOCK = 0xFFFF  # the largest stored (uncompressed) deflate block


def gzip_bytes(parts: list[bytes]) -> bytes:
    """`parts`, one after another, as one gzip member of stored deflate blocks (RFC 1951, 3.2.4).

    The contract names the shards `.tfrecord.gz` and readers open them with tf.data's
    GZIP reader; what they hold does not compress: encoded images are compressed already,
    and float vectors barely (ISA-L's fastest level, the writer before, kept 0.888 of a
    64-float shard of the bench corpus and grew random normals to 1.235, at about 200 MB/s
    per thread). Stored blocks cost a copy and a CRC, several GB/s, and readers inflate
    them at copy speed. Any gzip reader reads them; the bytes depend only on `parts`.
    """
    chunks = [m[i:i + STORED_BLOCK] for m in map(memoryview, parts) for i in range(0, len(m), STORED_BLOCK)]
    chunks = chunks or [memoryview(b"")]
    out, crc, size = [GZIP_HEADER], 0, 0
    for i, chunk in enumerate(chunks):
        n = len(chunk)
        out += (struct.pack("<BHH", i == len(chunks) - 1, n, n ^ 0xFFFF), chunk)  # BFINAL, BTYPE 00, LEN, NLEN
        crc = zlib.crc32(chunk, crc)
        size += n
    out.append(struct.pack("<II", crc, size & 0xFFFFFFFF))  # CRC-32 and ISIZE (size mod 2**32)
    return b"".join(out)


def tfrecord_bytes(table: pa.Table) -> bytes:
    """Gzipped TFRecord of tf.train.Example rows: id, label, label_text, cluster, and
    features, or image/encoded + image/format (+ embedding).

    A val shard holds several classes: runs of rows with the same label are encoded
    together, so the file keeps the table's row order.
    """
    if not table.num_rows:
        return gzip_bytes([])
    labels = table.column("label").to_numpy()
    texts = table.column("label_text").to_numpy(zero_copy_only=False)
    ids = table.column("id").to_numpy(zero_copy_only=False)
    clusters = table.column("cluster").to_numpy()
    floats = {}
    for name in ("features", "embedding"):
        if name in table.column_names:
            col = table.column(name).combine_chunks()
            floats[name] = col.flatten().to_numpy().reshape(-1, col.type.list_size)
    blobs = {}
    if "image" in table.column_names:
        blobs["image/encoded"] = table.column("image").to_numpy(zero_copy_only=False)
        blobs["image/format"] = np.array([f.encode() for f in table.column("format").to_pylist()], dtype=object)
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(labels)) + 1, [len(labels)]])
    parts = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        for lo in range(a, b, ENCODE_ROWS):
            hi = min(b, lo + ENCODE_ROWS)
            parts.append(example_codec.encode_tfrecords(
                ids[lo:hi], int(labels[lo]), str(texts[lo]), clusters[lo:hi],
                blobs={k: v[lo:hi] for k, v in blobs.items()}, floats={k: v[lo:hi] for k, v in floats.items()}))
    return gzip_bytes(parts)


def shard_name(index: int, count: int) -> str:
    return f"part-{index:05d}-of-{count:05d}"
