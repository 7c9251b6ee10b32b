"""The shard formats: the output table (`output_table`), Parquet, TFRecord in a gzip member of stored blocks, and atomic writes."""

from __future__ import annotations

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

ENCODE_ROWS = 16384  # rows encoded per call when writing TFRecord


def rejected_by_label(table: pa.Table) -> dict[str, int]:
    """Rejected records per label, as the manifest's rejected.by_label counts them."""
    labels, counts = np.unique([str(v) for v in table.column("label").to_pylist()], return_counts=True)
    return {str(k): int(n) for k, n in zip(labels, counts, strict=True)}


def output_table(table: pa.Table, labels, by_label: bool = False) -> pa.Table:
    """The shard's rows in their deterministic order, with the contract's columns.

    Order: by the order key (a hash of id, copy and seed); rows that tie on it are
    copies of the same record. `by_label` (val shards, which hold every class) sorts by
    label first, so the TFRecord writer encodes each class in one run. `labels`: class
    index -> label text (a sequence or a mapping), for the classes the rows hold. The
    features are gathered with numpy, not Arrow's take.
    """
    keys = [table.column("order").to_numpy()]
    if by_label:
        keys.append(table.column("label").to_numpy())
    order = np.lexsort(keys)
    label = table.column("label").to_numpy()[order].astype(np.int64)
    out = {
        "id": table.column("id").take(pa.array(order)),
        "label": pa.array(label, pa.int64()),
        "label_text": _label_texts(label, labels),
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


def _label_texts(label: np.ndarray, labels) -> pa.Array:
    """Each row's label text, from the labels the rows hold (not every class's)."""
    present, row_of = np.unique(label, return_inverse=True)
    return pa.array([labels[int(i)] for i in present], pa.string()).take(pa.array(row_of.ravel()))


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
