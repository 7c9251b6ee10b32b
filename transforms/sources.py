"""The read contract: what to read (`ReadSpec`), which files (`resolve_input`), in which
units, and `read_unit`, which turns a unit into raw batches (see transforms/records.py)
through the reader of its format, raising `UnreadableFile` naming the file.

A file is split into *units* that workers read in parallel: one per Parquet row
group, one per CSV or TFRecord file. Each unit is read in batches of at most
`batch_size` rows. The readers: transforms/columnar_readers.py (Parquet, CSV),
transforms/tfrecord_source.py (TFRecord). Plain Python over transforms/storage.py
(local disk, gs://, s3://), so tests run them without Beam.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from transforms import storage

INPUT_FORMATS = ("parquet", "tfrecord", "csv", "images")


class UnreadableFile(Exception):
    """A file that cannot be read at all; the message names the file."""


@dataclass(frozen=True)
class ReadSpec:
    """What to read and how: everything the readers need, and nothing else of the job's flags."""

    input: str  # a pattern of files, or the root of an image-folder corpus
    input_format: str  # parquet | tfrecord | csv | images
    label_column: str = "label"
    id_column: str = "id"
    feature_column: str | None = "features"
    feature_columns: tuple[str, ...] = ()
    image_column: str | None = None
    batch_size: int = 8192
    image_batch_size: int = 128
    reject_unreadable_files: bool = False
    progress_seconds: float = 15.0

    @property
    def payload(self) -> str:
        """What the records carry: encoded images, or feature vectors."""
        return "image" if self.input_format == "images" or self.image_column else "features"

    def one_at_a_time(self) -> ReadSpec:
        """The same reads, one record per batch (to keep what a damaged file held before the damage)."""
        return dataclasses.replace(self, batch_size=1, image_batch_size=1)


def open_file(path: str):
    return storage.open_read(path)


def guess_format(path: str) -> str:
    lowered = path.lower().rstrip("/*")
    for suffix, fmt in ((".parquet", "parquet"), (".pq", "parquet"), (".csv", "csv"),
                        (".tfrecord", "tfrecord"), (".tfrecord.gz", "tfrecord"), (".tfrecords", "tfrecord")):
        if lowered.endswith(suffix):
            return fmt
    raise ValueError(
        f"Cannot tell the format of --input {path!r} from its name: pass --input_format "
        f"({', '.join(INPUT_FORMATS)})."
    )


def resolve_input(path: str, fmt: str | None) -> tuple[str, str]:
    """A folder (with or without its trailing slash, local or on an object store) becomes a
    pattern of its files; checks something matches."""
    if fmt == "images":
        from transforms import image_folders  # which reads through this module

        if not image_folders.class_folders(path):
            raise ValueError(f"--input {path!r} has no class sub-folders: an image corpus is a folder "
                             "with one sub-folder of images per class.")
        return path.rstrip("/"), fmt
    pattern = path
    if path.endswith("/") or storage.is_folder(path):
        fmt = fmt or _format_in_dir(path)
        suffix = {"parquet": "**.parquet", "csv": "**.csv", "tfrecord": "**.tfrecord*"}[fmt]
        pattern = storage.join(path.rstrip("/"), suffix)
    fmt = fmt or guess_format(pattern)
    if not storage.match(pattern, limit=1):
        raise ValueError(f"--input {path!r} matches no {fmt} file (pattern {pattern!r}).")
    return pattern, fmt


def _format_in_dir(path: str) -> str:
    for f in storage.match(storage.join(path.rstrip("/"), "**"), limit=50):
        try:
            return guess_format(f)
        except ValueError:
            continue
    raise ValueError(f"Cannot tell the format of the files in {path!r}: pass --input_format.")


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


def read_unit(unit: tuple[str, int, int], spec) -> Iterator[dict]:
    """Raw batches (vectors or images) of one unit; raises UnreadableFile naming the file."""
    from transforms import columnar_readers, tfrecord_source  # which import this module

    path, rg, first = unit
    with _naming(path):
        if rg < 0:  # a whole file, or a Parquet file whose footer did not read
            with open_file(path) as f:
                if not f.read(1):
                    raise UnreadableFile(f"{path} is empty (0 bytes)")
        if rg == -2:
            with open_file(path) as f:
                pq.ParquetFile(f)  # re-raises the footer error with its message
        if spec.payload == "image":
            reader = columnar_readers.read_image_parquet(path, rg, first, spec) if spec.input_format == "parquet" \
                else tfrecord_source.read_image_tfrecord(path, spec)
        elif spec.input_format == "parquet":
            reader = columnar_readers.read_parquet(path, rg, first, spec)
        elif spec.input_format == "csv":
            reader = columnar_readers.read_csv(path, spec)
        else:
            reader = tfrecord_source.read_tfrecord(path, spec)
        yield from reader


def require(names: list[str], present: list[str], path: str, flag: str) -> None:
    missing = [c for c in names if c not in present]
    if missing:
        raise UnreadableFile(
            f"{path} has no column {missing[0]!r} (its columns: {present}); set {flag}"
        )


def blobs(values) -> np.ndarray:
    """Object array of bytes; a missing image becomes b"" (rejected as empty)."""
    out = np.full(len(values), None, dtype=object)
    out[:] = [b if b is not None else b"" for b in values]
    return out
