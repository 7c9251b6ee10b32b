"""tf.train.Example encoding and TFRecord framing for whole batches, without TensorFlow.

Beam's WriteToTFRecord serialises one element at a time (13.7k rows/s here). Within
a shard every record has the same label and the same fields; records whose id
length and cluster agree have byte-identical layouts, so a group of them is built as
one uint8 matrix: constant parts broadcast, the id and feature bytes copied in as
columns. Only the CRC of each record is a per-row call (a C function).

Wire format (protobuf): Example{features: Features{feature: map<string, Feature>}},
Feature is one of bytes_list (1), float_list (2), int64_list (3); lists are packed.
"""

from __future__ import annotations

import numpy as np
from google_crc32c import value as _crc32c


def varint(n: int) -> bytes:
    n &= 0xFFFFFFFFFFFFFFFF  # negative int64 is ten bytes, two's complement
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + varint(len(payload)) + payload


def bytes_feature(value: bytes) -> bytes:
    return _field(0x0A, _field(0x0A, value))


def int64_feature(value: int) -> bytes:
    return _field(0x1A, _field(0x0A, varint(value)))


def _float_header(dim: int) -> bytes:
    inner_len = 4 * dim
    return bytes([0x12]) + varint(len(b"\x0a" + varint(inner_len)) + inner_len) + b"\x0a" + varint(inner_len)


def _entry(key: str, feature: bytes) -> bytes:
    return _field(0x0A, _field(0x0A, key.encode()) + _field(0x12, feature))


def masked_crc(data) -> int:
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def encode_examples(
    ids: np.ndarray,
    label: int,
    label_text: str,
    clusters: np.ndarray,
    blobs: dict[str, np.ndarray] | None = None,
    floats: dict[str, np.ndarray] | None = None,
) -> list[bytes]:
    """Serialised Examples, one per row, in row order.

    Args:
      ids: str per row.
      label, label_text: the shard's class (index and text).
      clusters: int per row.
      blobs: extra bytes features, name -> object array of bytes (e.g. image/encoded).
      floats: float-list features, name -> float32[n, D].
    """
    return [bytes(r) for r in _encode(ids, label, label_text, clusters, blobs or {}, floats or {})[0]]


def _encode(ids, label, label_text, clusters, blobs, floats):
    """Rows grouped by layout: yields (list of uint8 matrices or bytes, order)."""
    n = len(ids)
    id_bytes = [str(v).encode() for v in ids]
    id_len = np.fromiter((len(b) for b in id_bytes), dtype=np.int64, count=n)
    clusters = np.asarray(clusters, dtype=np.int64)
    const = {
        "label": int64_feature(int(label)),
        "label_text": bytes_feature(label_text.encode()),
    }
    out: list = [None] * n
    if blobs:  # variable-length payloads: per-row join (images; the cost is in the bytes)
        for i in range(n):
            entries = dict(const)
            entries["id"] = bytes_feature(id_bytes[i])
            entries["cluster"] = int64_feature(int(clusters[i]))
            for name, arr in blobs.items():
                entries[name] = bytes_feature(arr[i])
            for name, arr in floats.items():
                entries[name] = _float_header(arr.shape[1]) + np.ascontiguousarray(arr[i], "<f4").tobytes()
            out[i] = _example(entries)
        return out, None
    names = sorted(floats)
    for length in np.unique(id_len):
        for cluster in np.unique(clusters[id_len == length]):
            rows = np.flatnonzero((id_len == length) & (clusters == cluster))
            out_rows = _encode_uniform(rows, id_bytes, int(length), int(cluster), const, floats, names)
            for i, r in zip(rows, out_rows, strict=True):
                out[i] = r
    return out, None


def _example(entries: dict[str, bytes]) -> bytes:
    body = b"".join(_entry(k, entries[k]) for k in sorted(entries))
    return _field(0x0A, body)


def _encode_uniform(rows, id_bytes, length, cluster, const, floats, names):
    """Rows with one layout: a uint8 matrix built column-block by column-block."""
    m = len(rows)
    placeholder = {"id": bytes_feature(b"\x00" * length), "cluster": int64_feature(cluster), **const}
    for name in names:
        placeholder[name] = _float_header(floats[name].shape[1]) + b"\x00" * (4 * floats[name].shape[1])
    template = _example(placeholder)
    mat = np.broadcast_to(np.frombuffer(template, np.uint8), (m, len(template))).copy()
    # Locate the variable blocks inside the template by the entry layout.
    offset = len(template) - len(b"".join(_entry(k, placeholder[k]) for k in sorted(placeholder)))
    for key in sorted(placeholder):
        entry = _entry(key, placeholder[key])
        if key == "id":
            start = offset + len(entry) - length
            ids = np.frombuffer(b"".join(id_bytes[i] for i in rows), np.uint8).reshape(m, length)
            mat[:, start : start + length] = ids
        elif key in floats:
            width = 4 * floats[key].shape[1]
            start = offset + len(entry) - width
            block = np.ascontiguousarray(floats[key][rows], dtype="<f4").view(np.uint8)
            mat[:, start : start + width] = block.reshape(m, width)
        offset += len(entry)
    return mat


def tfrecord_frames(examples) -> bytes:
    """TFRecord framing: length, masked CRC of length, data, masked CRC of data."""
    parts = []
    for data in examples:
        header = len(data).to_bytes(8, "little")
        parts.append(header)
        parts.append(masked_crc(header).to_bytes(4, "little"))
        parts.append(bytes(data))
        parts.append(masked_crc(data).to_bytes(4, "little"))
    return b"".join(parts)


def encode_tfrecords(ids, label, label_text, clusters, blobs=None, floats=None) -> bytes:
    """Examples for a batch, framed as TFRecords, concatenated."""
    rows, _ = _encode(ids, label, label_text, clusters, blobs or {}, floats or {})
    if not blobs:
        return _frame_matrix_rows(rows)
    return tfrecord_frames(rows)


def _frame_matrix_rows(rows) -> bytes:
    """Frames rows that share lengths in runs, with per-row CRCs only."""
    parts = []
    for r in rows:
        data = r.tobytes() if isinstance(r, np.ndarray) else r
        header = len(data).to_bytes(8, "little")
        parts.append(header + masked_crc(header).to_bytes(4, "little") + data + masked_crc(data).to_bytes(4, "little"))
    return b"".join(parts)
