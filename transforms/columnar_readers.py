"""Parquet and CSV input: files to raw batches (see transforms/records.py), and the vector
length the first file's schema fixes (`schema_dim`).

`read_parquet` reads one row group of feature vectors (a list column, or one number per
column), `read_image_parquet` one row group of encoded images (--image_column),
`read_csv` a whole file, every column as text so that one bad value rejects its row; a
row with the wrong number of fields becomes a rejected row of its own. Called by
transforms/sources.py's `read_unit`, which names the file when a read fails.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from transforms import records, storage
from transforms.sources import ReadSpec, UnreadableFile, blobs, open_file, require


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


def read_parquet(path: str, rg: int, first: int, spec) -> Iterator[dict]:
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


def read_csv(path: str, spec) -> Iterator[dict]:
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


def read_image_parquet(path: str, rg: int, first: int, spec) -> Iterator[dict]:
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
