"""Corpus readers: files to raw batches (see transforms/records.py), in bounded memory.

A file is split into *units* that workers read in parallel: one per Parquet row
group, one per CSV or TFRecord file. Each unit is read in batches of at most
`batch_size` rows. Plain Python over Beam's FileSystems (local disk, gs://, ...),
so tests run them without Beam.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms import records
from transforms.example_codec import DamagedRecord, read_tfrecords


class UnreadableFile(Exception):
    """A file that cannot be read at all; the message names the file."""


def open_file(path: str):
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def list_units(path: str, fmt: str) -> list[tuple[str, int, int]]:
    """(path, row_group, first_row) units of a file; row_group -1 = whole file."""
    if fmt != "parquet":
        return [(path, -1, 0)]
    try:
        with open_file(path) as f:
            meta = pq.ParquetFile(f).metadata
    except (OSError, pa.ArrowException):
        return [(path, -2, 0)]  # read_unit reports it, naming the file
    units, first = [], 0
    for rg in range(meta.num_row_groups):
        units.append((path, rg, first))
        first += meta.row_group(rg).num_rows
    return units


def _as_unreadable(path: str, e: Exception) -> Exception:
    """The exception to raise for a read failure: UnreadableFile naming the file, or e itself."""
    if isinstance(e, UnreadableFile):
        return e
    if type(e).__module__.startswith("tensorflow"):  # DataLossError: bad CRC, truncated, not gzip
        message = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\].*$", "", getattr(e, "message", str(e)))
        return UnreadableFile(f"cannot read {path}: {type(e).__name__}: {message}")
    if isinstance(e, (OSError, pa.ArrowException, ValueError)):
        return UnreadableFile(f"cannot read {path}: {type(e).__name__}: {e}")
    return e


@contextmanager
def _naming(path: str):
    """Turns a read failure into UnreadableFile naming the file (other errors pass through)."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - mapped, or re-raised as it is
        mapped = _as_unreadable(path, e)
        if mapped is e:
            raise
        raise mapped from e


def read_unit(unit: tuple[str, int, int], cfg) -> Iterator[dict]:
    """Raw batches (vectors or images) of one unit; raises UnreadableFile naming the file."""
    path, rg, first = unit
    with _naming(path):
        if rg < 0:  # a whole file, or a Parquet file whose footer did not read
            with open_file(path) as f:
                if not f.read(1):
                    raise UnreadableFile(f"{path} is empty (0 bytes)")
        if rg == -2:
            with open_file(path) as f:
                pq.ParquetFile(f)  # re-raises the footer error with its message
        if cfg.payload == "image":
            reader = _read_image_parquet(path, rg, first, cfg) if cfg.input_format == "parquet" \
                else _read_image_tfrecord(path, cfg)
        elif cfg.input_format == "parquet":
            reader = _read_parquet(path, rg, first, cfg)
        elif cfg.input_format == "csv":
            reader = _read_csv(path, cfg)
        else:
            reader = _read_tfrecord(path, cfg)
        yield from reader


def _require(names: list[str], present: list[str], path: str, flag: str) -> None:
    missing = [c for c in names if c not in present]
    if missing:
        raise UnreadableFile(
            f"{path} has no column {missing[0]!r} (its columns: {present}); set {flag}"
        )


def _read_parquet(path: str, rg: int, first: int, cfg) -> Iterator[dict]:
    with open_file(path) as f:
        pf = pq.ParquetFile(f, page_checksum_verification=True)  # where the writer stored checksums
        names = pf.schema_arrow.names
        _require([cfg.label_column], names, path, "--label_column")
        feats = list(cfg.feature_columns) or [cfg.feature_column]
        _require(feats, names, path, "--feature_columns" if cfg.feature_columns else "--feature_column")
        has_id = cfg.id_column in names
        columns = [cfg.label_column, *feats] + ([cfg.id_column] if has_id else [])
        row = first
        for batch in pf.iter_batches(batch_size=cfg.batch_size, row_groups=[rg], columns=columns):
            yield _raw_from_table(batch, path, row, cfg, has_id)
            row += batch.num_rows


def _raw_from_table(batch: pa.RecordBatch, path: str, first: int, cfg, has_id: bool) -> dict:
    n = batch.num_rows
    if cfg.feature_columns:
        values, lengths, errors = records.ragged_from_columns(
            [batch.column(c) for c in cfg.feature_columns], list(cfg.feature_columns)
        )
    else:
        col = batch.column(cfg.feature_column)
        if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
                or pa.types.is_fixed_size_list(col.type)):
            raise UnreadableFile(
                f"{path}: column {cfg.feature_column!r} is {col.type}, not a list of numbers; "
                "for one number per column use --feature_columns a,b,c"
            )
        values, lengths = records.ragged_from_list(col)
        errors = None
    return {
        "source": path,
        "row": np.arange(first, first + n, dtype=np.int64),
        "id": records.label_strings(batch.column(cfg.id_column)) if has_id else None,
        "label": records.label_strings(batch.column(cfg.label_column)),
        "values": values,
        "lengths": lengths,
        "errors": errors,
    }


def _read_csv(path: str, cfg) -> Iterator[dict]:
    ragged: list = []

    def on_invalid(row) -> str:
        ragged.append((row.number, f"row has {row.actual_columns} fields, expected {row.expected_columns}"))
        return "skip"

    read = pacsv.ReadOptions(use_threads=False, block_size=1 << 22)
    parse = pacsv.ParseOptions(invalid_row_handler=on_invalid)
    with open_file(path) as f:  # the column names; every column is read as text, so that a bad
        names = pacsv.open_csv(f, read_options=read, parse_options=parse).schema.names  # value deep
    ragged.clear()  # in a file rejects its row instead of failing the type Arrow would guess
    with open_file(path) as f:
        reader = pacsv.open_csv(
            f,
            read_options=read,
            parse_options=parse,
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True, null_values=[""],
                                                 column_types=dict.fromkeys(names, pa.string()),
                                                 auto_dict_encode=False),
        )
        names = reader.schema.names
        _require([cfg.label_column], names, path, "--label_column")
        has_id = cfg.id_column in names
        feats = list(cfg.feature_columns) or [c for c in names if c not in (cfg.label_column, cfg.id_column)]
        _require(feats, names, path, "--feature_columns")
        csv_cfg = dataclasses.replace(cfg, feature_columns=tuple(feats))
        row = 0
        for batch in reader:
            for start in range(0, batch.num_rows, cfg.batch_size):
                part = batch.slice(start, cfg.batch_size)
                yield _raw_from_table(part, path, row, csv_cfg, has_id)
                row += part.num_rows
            if ragged:
                yield _ragged_rows(path, ragged)
                ragged.clear()
        if ragged:
            yield _ragged_rows(path, ragged)


def _ragged_rows(path: str, rows: list) -> dict:
    n = len(rows)
    return {
        "source": path,
        "row": np.array([-1 if num is None else num - 1 for num, _ in rows], dtype=np.int64),
        "id": None,
        "label": np.full(n, None, dtype=object),
        "values": np.zeros(0, np.float32),
        "lengths": np.full(n, -1, np.int64),
        "errors": np.array([reason for _, reason in rows], dtype=object),
    }


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


def _read_tfrecord(path: str, cfg) -> Iterator[dict]:
    import tensorflow as tf

    spec, row = None, 0
    for serialized in _tfrecord_batches(path, cfg.batch_size):
        if spec is None:
            spec = _tfrecord_spec(serialized.numpy(), cfg, path, cfg.feature_column, tf.float32)
        parsed = tf.io.parse_example(serialized, spec)
        n = int(serialized.shape[0])
        values = parsed[cfg.feature_column]
        yield {
            "source": path,
            "row": np.arange(row, row + n, dtype=np.int64),
            "id": first_values(parsed[cfg.id_column], _text) if cfg.id_column in spec else None,
            "label": first_values(parsed[cfg.label_column], _text),
            "values": values.flat_values.numpy().astype(np.float32),
            "lengths": values.row_lengths().numpy().astype(np.int64),
            "errors": None,
        }
        row += n


def _tfrecord_spec(batch, cfg, path: str, payload: str, dtype) -> dict:
    """Parse spec from the batch's first Example that has a label and the payload: label
    (bytes or int64), payload, id if present. Records without them are rejected later."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    for i, record in enumerate(batch):
        try:
            feats = tf.train.Example.FromString(record).features.feature
        except DecodeError as e:
            raise UnreadableFile(f"{path}: record {i} is not a tf.train.Example ({e})") from e
        if cfg.label_column in feats and payload in feats:
            break
    _require([cfg.label_column, payload], list(feats.keys()), path,
             "--label_column / --image_column" if cfg.payload == "image" else "--label_column / --feature_column")
    kind = feats[cfg.label_column].WhichOneof("kind")
    spec = {
        cfg.label_column: tf.io.RaggedFeature(tf.string if kind == "bytes_list" else tf.int64),
        payload: tf.io.RaggedFeature(dtype),
    }
    if cfg.id_column in feats:
        spec[cfg.id_column] = tf.io.RaggedFeature(tf.string)
    return spec


# ---------------------------------------------------------------- images

# What keras.utils.image_dataset_from_directory indexes (ALLOWLIST_FORMATS in
# keras/src/utils/image_dataset_utils.py), compared in lower case. Other files in the class
# folders (README.txt, .webp, .tiff, ...) are rejected with the reason, so the images read
# are the ones Keras reads and nothing is dropped unseen; hidden ones (.DS_Store) are skipped.
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def is_image_name(path: str) -> bool:
    return path.rsplit("/", 1)[-1].lower().endswith(IMAGE_SUFFIXES)


def class_folders(root: str) -> list[tuple[str, str]]:
    """(label, folder) for each class of an image-folder corpus, as Keras finds them.

    The classes are root's sub-folders whose names do not start with "."; files directly
    in root belong to no class.
    """
    root = root.rstrip("/")
    if os.path.isdir(root):
        names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
        return [(d, os.path.join(root, d)) for d in names]
    # Object stores have no folders to list: this one listing walks every object.
    found = FileSystems.match([FileSystems.join(root, "**")])[0].metadata_list
    rel = (m.path[len(root) + 1 :] for m in found)
    labels = sorted({r.split("/", 1)[0] for r in rel if "/" in r and not r.startswith(".")})
    return [(label, FileSystems.join(root, label)) for label in labels]


def empty_class_folders(root: str) -> list[str]:
    """Labels of class folders with no file in them (local disk; object stores have no empty folders).

    Keras lists such a folder as a class with no images; the job has no record of it, so
    it is not a class of the output.
    """
    return [label for label, folder in class_folders(root) if os.path.isdir(folder)
            and not any(not name.startswith(".") for _top, _dirs, files in os.walk(folder) for name in files)]


def class_images(label: str, folder: str) -> list[tuple[str, str]]:
    """(label, path) of each file under a class folder, nested ones included, sorted.

    A walk of the folder as Keras's index_directory walks it: symlinked sub-folders are
    not followed, hidden sub-folders are. Of the files whose names do not end in one of
    IMAGE_SUFFIXES (any letter case), which Keras drops, hidden ones are skipped and the
    rest listed, for `read_image_files` to reject with the reason.
    """
    if os.path.isdir(folder):
        found = [os.path.join(top, name) for top, _dirs, files in os.walk(folder) for name in files]
    else:
        found = [m.path for m in FileSystems.match([FileSystems.join(folder, "**")])[0].metadata_list]
    return [(label, p) for p in sorted(found) if is_image_name(p) or not p.rsplit("/", 1)[-1].startswith(".")]


def _not_listed(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    ext = os.path.splitext(name)[1] or "no extension"
    return (f"not read: {ext} is not one of the image extensions keras.utils.image_dataset_from_directory "
            f"reads ({' '.join(IMAGE_SUFFIXES)})")


def read_image_files(files: list[tuple[str, str]]) -> dict:
    """Raw image batch from (label, path) files of an image-folder corpus (bytes unchanged)."""
    blobs = []
    errors = np.full(len(files), None, dtype=object)
    for i, (_, path) in enumerate(files):
        if not is_image_name(path):
            blobs.append(b"")
            errors[i] = _not_listed(path)
            continue
        try:
            with open_file(path) as f:
                blobs.append(f.read())
        except OSError as e:
            blobs.append(b"")
            errors[i] = f"cannot read the file ({type(e).__name__}: {e})"
    return {
        "source": np.asarray([p for _, p in files], dtype=object),
        "row": np.full(len(files), -1, np.int64),
        "id": None,
        "label": np.asarray([label for label, _ in files], dtype=object),
        "image": np.asarray(blobs + [None], dtype=object)[:-1],
        "errors": errors,
    }


def _read_image_parquet(path: str, rg: int, first: int, cfg) -> Iterator[dict]:
    """Raw image batches of a Parquet row group (--image_column)."""
    with open_file(path) as f:
        pf = pq.ParquetFile(f, page_checksum_verification=True)  # where the writer stored checksums
        names = pf.schema_arrow.names
        _require([cfg.label_column, cfg.image_column], names, path, "--label_column / --image_column")
        has_id = cfg.id_column in names
        cols = [cfg.label_column, cfg.image_column] + ([cfg.id_column] if has_id else [])
        row = first
        for batch in pf.iter_batches(batch_size=cfg.image_batch_size, row_groups=[rg], columns=cols):
            n = batch.num_rows
            yield {
                "source": path, "row": np.arange(row, row + n, dtype=np.int64),
                "id": records.label_strings(batch.column(cfg.id_column)) if has_id else None,
                "label": records.label_strings(batch.column(cfg.label_column)),
                "image": _blobs(batch.column(cfg.image_column).to_pylist()),
                "errors": None,
            }
            row += n


def _blobs(values) -> np.ndarray:
    """Object array of bytes; a missing image becomes b"" (rejected as empty)."""
    out = np.full(len(values), None, dtype=object)
    out[:] = [b if b is not None else b"" for b in values]
    return out


def _read_image_tfrecord(path: str, cfg) -> Iterator[dict]:
    import tensorflow as tf

    image_key = cfg.image_column or "image/encoded"
    spec, row = None, 0
    for serialized in _tfrecord_batches(path, cfg.image_batch_size):
        if spec is None:
            spec = _tfrecord_spec(serialized.numpy(), cfg, path, image_key, tf.string)
        parsed = tf.io.parse_example(serialized, spec)
        n = int(serialized.shape[0])
        yield {
            "source": path, "row": np.arange(row, row + n, dtype=np.int64),
            "id": first_values(parsed[cfg.id_column], _text) if cfg.id_column in spec else None,
            "label": first_values(parsed[cfg.label_column], _text),
            "image": _blobs(first_values(parsed[image_key], bytes)),
            "errors": None,
        }
        row += n
