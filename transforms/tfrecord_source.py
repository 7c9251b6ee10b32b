"""TFRecord input: files of tf.train.Example records (vectors, or encoded images) to raw batches.

Records are read by our own framing reader (transforms.example_codec.read_tfrecords),
which checks every length and data CRC, and gzip is detected from the bytes: tf.data
ends a gzip stream cut short without an error. The parse spec comes from the first
Example of a batch that has a label and the payload.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator

import numpy as np

from transforms.example_codec import DamagedRecord, read_tfrecords
from transforms.sources import UnreadableFile, blobs, open_file, require


def _tfrecord_batches(path: str, batch_size: int):
    """Serialized records of a TFRecord file in batches (tf string tensors), every record's
    length and data checked against their CRCs; gzip detected from the bytes. Read here
    rather than by tf.data, which ends a gzip stream cut short without an error."""
    import tensorflow as tf

    batch = []
    for record in _tfrecords(path):
        batch.append(record)
        if len(batch) == batch_size:
            yield tf.constant(batch)
            batch = []
    if batch:
        yield tf.constant(batch)


def _tfrecords(path: str) -> Iterator[bytes]:
    with open_file(path) as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    with open_file(path) as raw:
        n = 0
        try:
            for record in read_tfrecords(gzip.GzipFile(fileobj=raw) if gzipped else raw):
                yield record
                n += 1
        except DamagedRecord as e:
            raise UnreadableFile(f"{path}: {e}") from e
        except (EOFError, OSError, zlib.error) as e:  # a gzip stream cut short or damaged
            raise UnreadableFile(f"{path}: the gzip stream is damaged or cut short after {n} records ({e})") from e


def first_values(t, decode) -> np.ndarray:
    """First value of each row of a ragged tensor, decoded; None for empty rows."""
    lengths = t.row_lengths().numpy()
    values = t.flat_values.numpy()
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    out = np.full(len(lengths), None, dtype=object)
    for i in np.flatnonzero(lengths > 0):
        out[i] = decode(values[starts[i]])
    return out


def _text(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(int(v))


def read_tfrecord(path: str, spec) -> Iterator[dict]:
    import tensorflow as tf

    features, row = None, 0
    for serialized in _tfrecord_batches(path, spec.batch_size):
        if features is None:
            features = _tfrecord_features(serialized.numpy(), spec, path, spec.feature_column, tf.float32)
        parsed = tf.io.parse_example(serialized, features)
        n = int(serialized.shape[0])
        values = parsed[spec.feature_column]
        yield {
            "source": path,
            "row": np.arange(row, row + n, dtype=np.int64),
            "id": first_values(parsed[spec.id_column], _text) if spec.id_column in features else None,
            "label": first_values(parsed[spec.label_column], _text),
            "values": values.flat_values.numpy().astype(np.float32),
            "lengths": values.row_lengths().numpy().astype(np.int64),
            "errors": None,
        }
        row += n


def _tfrecord_features(batch, spec, path: str, payload: str, dtype) -> dict:
    """Parse spec from the batch's first Example that has a label and the payload: label
    (bytes or int64), payload, id if present. Records without them are rejected later."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    for i, record in enumerate(batch):
        try:
            feats = tf.train.Example.FromString(record).features.feature
        except DecodeError as e:
            raise UnreadableFile(f"{path}: record {i} is not a tf.train.Example ({e})") from e
        if spec.label_column in feats and payload in feats:
            break
    require([spec.label_column, payload], list(feats.keys()), path,
             "--label_column / --image_column" if spec.payload == "image" else "--label_column / --feature_column")
    kind = feats[spec.label_column].WhichOneof("kind")
    features = {
        spec.label_column: tf.io.RaggedFeature(tf.string if kind == "bytes_list" else tf.int64),
        payload: tf.io.RaggedFeature(dtype),
    }
    if spec.id_column in feats:
        features[spec.id_column] = tf.io.RaggedFeature(tf.string)
    return features




def read_image_tfrecord(path: str, spec) -> Iterator[dict]:
    import tensorflow as tf

    image_key = spec.image_column or "image/encoded"
    features, row = None, 0
    for serialized in _tfrecord_batches(path, spec.image_batch_size):
        if features is None:
            features = _tfrecord_features(serialized.numpy(), spec, path, image_key, tf.string)
        parsed = tf.io.parse_example(serialized, features)
        n = int(serialized.shape[0])
        yield {
            "source": path, "row": np.arange(row, row + n, dtype=np.int64),
            "id": first_values(parsed[spec.id_column], _text) if spec.id_column in features else None,
            "label": first_values(parsed[spec.label_column], _text),
            "image": blobs(first_values(parsed[image_key], bytes)),
            "errors": None,
        }
        row += n
