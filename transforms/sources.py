"""Corpus readers: files to raw batches (see transforms/records.py), in bounded memory.

A file is split into *units* that workers read in parallel: one per Parquet row
group, one per CSV or TFRecord file. Each unit is read in batches of at most
`batch_size` rows. Plain Python over transforms/storage.py (local disk, gs://, s3://),
so tests run them without Beam.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from transforms import records, storage

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
    from transforms import tfrecord_source  # imports this module

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
            reader = _read_image_parquet(path, rg, first, spec) if spec.input_format == "parquet" \
                else tfrecord_source.read_image_tfrecord(path, spec)
        elif spec.input_format == "parquet":
            reader = _read_parquet(path, rg, first, spec)
        elif spec.input_format == "csv":
            reader = _read_csv(path, spec)
        else:
            reader = tfrecord_source.read_tfrecord(path, spec)
        yield from reader


def require(names: list[str], present: list[str], path: str, flag: str) -> None:
    missing = [c for c in names if c not in present]
    if missing:
        raise UnreadableFile(
            f"{path} has no column {missing[0]!r} (its columns: {present}); set {flag}"
        )


def schema_dim(spec: ReadSpec) -> int | None:
    """The vector length when the first file's schema fixes it; None: the corpus's most common one.

    Checks the first file's columns with the workers' own check (a file without them
    fails the job before it starts, or, with --reject_unreadable_files, is left to the
    workers to reject); a file that cannot be read at all is left to the workers too.
    """
    if spec.feature_columns:
        return len(spec.feature_columns)
    if spec.input_format not in ("parquet", "csv"):
        return None
    first = storage.match(spec.input, limit=1)[0]
    try:
        with open_file(first) as f:
            if spec.input_format == "parquet":
                schema = pq.ParquetFile(f).schema_arrow
                names = schema.names
            else:  # pyarrow parses the header: quotes, BOM
                names = pacsv.open_csv(f, parse_options=pacsv.ParseOptions(invalid_row_handler=lambda row: "skip"),
                                       convert_options=pacsv.ConvertOptions(column_types=None)).schema.names
    except Exception:  # noqa: BLE001 - the job itself reports unreadable files
        return None
    try:
        require([spec.label_column], names, first, "--label_column")
        if spec.input_format == "csv":
            return len([c for c in names if c not in (spec.label_column, spec.id_column)])
        require([spec.feature_column], names, first, "--feature_column")
    except UnreadableFile as e:
        if spec.reject_unreadable_files:
            return None  # the job rejects the file
        raise ValueError(f"{e}.") from None
    t = schema.field(spec.feature_column).type
    return t.list_size if pa.types.is_fixed_size_list(t) else None


def _read_parquet(path: str, rg: int, first: int, spec) -> Iterator[dict]:
    with open_file(path) as f:
        pf = pq.ParquetFile(f, page_checksum_verification=True)  # where the writer stored checksums
        names = pf.schema_arrow.names
        require([spec.label_column], names, path, "--label_column")
        feats = list(spec.feature_columns) or [spec.feature_column]
        require(feats, names, path, "--feature_columns" if spec.feature_columns else "--feature_column")
        has_id = spec.id_column in names
        columns = [spec.label_column, *feats] + ([spec.id_column] if has_id else [])
        row = first
        for batch in pf.iter_batches(batch_size=spec.batch_size, row_groups=[rg], columns=columns):
            yield _raw_from_table(batch, path, row, spec, has_id)
            row += batch.num_rows


def _raw_from_table(batch: pa.RecordBatch, path: str, first: int, spec, has_id: bool) -> dict:
    n = batch.num_rows
    if spec.feature_columns:
        values, lengths, errors = records.ragged_from_columns(
            [batch.column(c) for c in spec.feature_columns], list(spec.feature_columns)
        )
    else:
        col = batch.column(spec.feature_column)
        if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
                or pa.types.is_fixed_size_list(col.type)):
            raise UnreadableFile(
                f"{path}: column {spec.feature_column!r} is {col.type}, not a list of numbers; "
                "for one number per column use --feature_columns a,b,c"
            )
        values, lengths = records.ragged_from_list(col)
        errors = None
    return {
        "source": path,
        "row": np.arange(first, first + n, dtype=np.int64),
        "id": records.label_strings(batch.column(spec.id_column)) if has_id else None,
        "label": records.label_strings(batch.column(spec.label_column)),
        "values": values,
        "lengths": lengths,
        "errors": errors,
    }


def _read_csv(path: str, spec) -> Iterator[dict]:
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
        require([spec.label_column], names, path, "--label_column")
        has_id = spec.id_column in names
        feats = list(spec.feature_columns) or [c for c in names if c not in (spec.label_column, spec.id_column)]
        require(feats, names, path, "--feature_columns")
        csv_spec = dataclasses.replace(spec, feature_columns=tuple(feats))
        row = 0
        for batch in reader:
            for start in range(0, batch.num_rows, spec.batch_size):
                part = batch.slice(start, spec.batch_size)
                yield _raw_from_table(part, path, row, csv_spec, has_id)
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


def _read_image_parquet(path: str, rg: int, first: int, spec) -> Iterator[dict]:
    """Raw image batches of a Parquet row group (--image_column)."""
    with open_file(path) as f:
        pf = pq.ParquetFile(f, page_checksum_verification=True)  # where the writer stored checksums
        names = pf.schema_arrow.names
        require([spec.label_column, spec.image_column], names, path, "--label_column / --image_column")
        has_id = spec.id_column in names
        cols = [spec.label_column, spec.image_column] + ([spec.id_column] if has_id else [])
        row = first
        for batch in pf.iter_batches(batch_size=spec.image_batch_size, row_groups=[rg], columns=cols):
            n = batch.num_rows
            yield {
                "source": path, "row": np.arange(row, row + n, dtype=np.int64),
                "id": records.label_strings(batch.column(spec.id_column)) if has_id else None,
                "label": records.label_strings(batch.column(spec.label_column)),
                "image": blobs(batch.column(spec.image_column).to_pylist()),
                "errors": None,
            }
            row += n


def blobs(values) -> np.ndarray:
    """Object array of bytes; a missing image becomes b"" (rejected as empty)."""
    out = np.full(len(values), None, dtype=object)
    out[:] = [b if b is not None else b"" for b in values]
    return out
