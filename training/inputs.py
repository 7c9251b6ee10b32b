"""New files for training.predict, read into raw batches by the job's own readers.

Parquet, CSV and TFRecord files go through transforms.sources (`list_units`, `read_unit`:
row groups or whole files, in batches of at most `batch_size` rows); image folders
through transforms.image_folders (`class_folders` / `class_images` / `read_image_files`). Labels are optional:
an image folder with one sub-folder per class is labelled by the folders (as the job
reads it), image files directly in the folder or matched by a glob are not; a Parquet
or CSV file without the label column is read here (`unlabeled_batches`, with the same
transforms.records helpers the job uses), since the job's readers require that column.
Rows without a label carry `UNLABELED`, which validation accepts and the output shows
as null. A file that cannot be read becomes one rejected entry naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from transforms import image_folders, records, sources, storage
from transforms.sources import resolve_input

UNLABELED = "\x00unlabeled"  # the label of a row that has none (never a real label: NUL)
IMAGE_GROUP = 128  # image files per raw batch (the job's --image_batch_size default)


def image_files(path: str) -> list[tuple[str, str]]:
    """(label, file) of the images under `path`: a folder (class sub-folders labelled, files
    directly in it not) or a glob of image files (not labelled)."""
    if storage.is_folder(path):
        files = [f for label, folder in image_folders.class_folders(path) for f in image_folders.class_images(label, folder)]
        if storage.is_remote(path):
            top = path.rstrip("/") + "/"
            files += [(UNLABELED, p) for p in storage.list_files(path)
                      if "/" not in p[len(top):] and not p[len(top):].startswith(".")]
        else:
            files += [(UNLABELED, os.path.join(path, n)) for n in sorted(os.listdir(path))
                      if os.path.isfile(os.path.join(path, n)) and not n.startswith(".")]
    else:
        files = [(UNLABELED, p) for p in storage.match(path)]
    if not files:
        raise ValueError(f"--input {path!r} holds no image files.")
    return files


def image_batches(files: list[tuple[str, str]]) -> Iterator[dict]:
    """Raw image batches of IMAGE_GROUP files each."""
    for start in range(0, len(files), IMAGE_GROUP):
        yield image_folders.read_image_files(files[start:start + IMAGE_GROUP])


def vector_files(path: str, fmt: str | None) -> tuple[list[str], str]:
    """The files `path` (a glob or a folder) matches, and their format."""
    pattern, fmt = resolve_input(path, fmt)
    return sorted(storage.match(pattern)), fmt


def columns_of(path: str, fmt: str) -> list[str] | None:
    """Column names of a Parquet or CSV file (None for TFRecord, or a file that does not open)."""
    try:
        with sources.open_file(path) as f:
            if fmt == "parquet":
                return pq.ParquetFile(f).schema_arrow.names
            if fmt == "csv":
                return pacsv.open_csv(f).schema.names
    except (OSError, pa.ArrowException):
        return None  # read_unit reports it, naming the file
    return None


def vector_batches(path: str, spec: sources.ReadSpec) -> Iterator[dict]:
    """Raw batches of one file, with or without a label column; UnreadableFile names the file."""
    names = columns_of(path, spec.input_format)
    for unit in sources.list_units(path, spec.input_format):
        if names is None or spec.label_column in names:
            yield from sources.read_unit(unit, spec)
        else:
            yield from unlabeled_batches(unit, spec, names)


def unlabeled_batches(unit: tuple[str, int, int], spec: sources.ReadSpec, names: list[str]) -> Iterator[dict]:
    """A Parquet row group or CSV file without labels, as raw batches labelled UNLABELED."""
    path, rg, row = unit
    columns = list(spec.feature_columns) or ([spec.feature_column] if spec.feature_column else
                                            [c for c in names if c != spec.id_column])
    missing = [c for c in columns if c not in names]
    if missing:
        raise sources.UnreadableFile(f"{path} has no column {missing[0]!r} (its columns: {names})")
    has_id = spec.id_column in names
    wanted = columns + ([spec.id_column] if has_id else [])
    try:
        with sources.open_file(path) as f:
            if spec.input_format == "parquet":
                table_batches = pq.ParquetFile(f).iter_batches(spec.batch_size, row_groups=[rg], columns=wanted)
            else:
                text = pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), include_columns=wanted)
                table_batches = pacsv.open_csv(f, read_options=pacsv.ReadOptions(block_size=1 << 22),
                                               convert_options=text)
            for batch in table_batches:
                kind = batch.schema.field(columns[0]).type
                if len(columns) == 1 and (pa.types.is_list(kind) or pa.types.is_large_list(kind)
                                          or pa.types.is_fixed_size_list(kind)):
                    values, lengths = records.ragged_from_list(batch.column(columns[0]))
                    errors = None
                else:
                    values, lengths, errors = records.ragged_from_columns(
                        [batch.column(c) for c in columns], columns)
                n = batch.num_rows
                yield {"source": path, "row": np.arange(row, row + n, dtype=np.int64),
                       "id": records.label_strings(batch.column(spec.id_column)) if has_id else None,
                       "label": np.full(n, UNLABELED, object), "values": values, "lengths": lengths,
                       "errors": errors}
                row += n
    except (OSError, pa.ArrowException) as e:
        raise sources.UnreadableFile(f"cannot read {path}: {type(e).__name__}: {e}") from e
