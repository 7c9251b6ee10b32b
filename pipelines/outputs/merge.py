"""A shard's fragments merged into its files: `shard_task` (in the worker: the shard's part of
the plan), then `merge_shard` (on a job process: read, sorted by hash, written as Parquet and
TFRecord)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import partial
from typing import NamedTuple

import numpy as np
from apache_beam.io.filesystems import FileSystems

from pipelines.outputs.formats import (
    output_table,
    rejected_by_label,
    tfrecord_bytes,
    write_atomic,
    write_parquet,
)
from pipelines.outputs.fragments import mkdirs, read_fragments, row_schema
from pipelines.outputs.layout import HELD_OUT, shard_paths
from transforms.records import REJECTED_SCHEMA, jsonl_bytes

log = logging.getLogger("pipelines.balance")


class ShardTask(NamedTuple):
    """What one merge needs: its destination, fragments and paths, and only its part of the
    plan (so a task's size does not grow with the number of classes)."""

    dest: tuple  # (split, class index, shard)
    fragments: list[str]
    paths: dict[str, str]  # format -> path relative to OUT
    payload: dict[str, int | None]  # the shards' payload columns (plan.payload)
    labels: Mapping[int, str] | Sequence[str]  # class index -> label, for the labels the shard may hold


def shard_task(group: tuple, plan, formats) -> ShardTask:
    """(dest, its fragments) -> its ShardTask: a train shard carries its one class's label,
    a val or test shard every label."""
    dest, fragments = group
    if dest[0] == "train":
        cp = plan.of_index(dest[1])
        labels = {cp.index: cp.label}
    else:
        labels = plan.order
    return ShardTask(dest, fragments, shard_paths(dest, plan, formats), plan.payload, labels)


def merge_shard(task: ShardTask, out: str) -> dict:
    """A shard's fragments -> its final file(s) in OUT. Returns the shard's metadata."""
    # No local name holds the fragments' table: write_shard frees it once sorted.
    return write_shard(task, read_fragments(task.fragments) if task.fragments else None, out)


def write_shard(task: ShardTask, table, out: str) -> dict:
    dest, paths = task.dest, task.paths
    if dest[0] == "rejected":
        table = table if table is not None else REJECTED_SCHEMA.empty_table()
        _write(out, paths["jsonl"], jsonl_bytes(table))
        return {"dest": list(dest), "records": table.num_rows, "paths": paths, "clusters": {},
                "by_label": rejected_by_label(table)}
    if table is None:
        table = row_schema(task.payload).empty_table()
    table = output_table(table, task.labels, by_label=dest[0] in HELD_OUT)
    for fmt, rel in paths.items():
        # Parquet streams into the file; TFRecord is encoded whole, then written.
        _write(out, rel, partial(write_parquet, table) if fmt == "parquet" else tfrecord_bytes(table))
    clusters, counts = np.unique(table.column("cluster").to_numpy(), return_counts=True)
    log.info("wrote %s (%d records)", " + ".join(paths.values()), table.num_rows)
    return {"dest": list(dest), "records": table.num_rows, "paths": paths,
            "clusters": {int(c): int(n) for c, n in zip(clusters, counts, strict=True)}}


def _write(out: str, rel: str, data) -> None:
    path = FileSystems.join(out, rel)
    mkdirs(path.rsplit("/", 1)[0])
    write_atomic(path, data)
