"""Shards' fragments merged into their files: `merge_task` (in the worker: each shard's part of
the plan), then `merge_shards` (on a job process: read, sorted by hash, written as Parquet and
TFRecord). Small shards of many classes go in one task (`merge_groups`), so the tasks, the
files opened and the log lines grow with the bytes written, not with the classes."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
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
from pipelines.outputs.fragments import (
    Fragment,
    mkdirs,
    read_fragment_groups,
    read_fragments,
    row_schema,
)
from pipelines.outputs.layout import HELD_OUT, shard_paths
from transforms.plan import pack_in_order
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


GROUP_BYTES = 16 << 20  # a group task's shards together, about
GROUP_SHARDS = 512  # and at most this many of them
SMALL_SHARD_BYTES = 1 << 20  # a class's shard under this is merged in a group


def merge_groups(shard_bytes: Sequence[tuple[int, int]]) -> list[int]:
    """Per class, in index order, (shards, bytes of each shard) -> its merge group, or -1
    for a class whose shards are merged one task each. Classes of one small shard are
    packed in index order into groups of up to GROUP_BYTES and GROUP_SHARDS."""
    small = [i for i, (shards, nbytes) in enumerate(shard_bytes) if shards == 1 and nbytes < SMALL_SHARD_BYTES]
    groups = [-1] * len(shard_bytes)
    for i, group in zip(small, pack_in_order([shard_bytes[i][1] for i in small], GROUP_BYTES, GROUP_SHARDS),
                        strict=True):
        groups[i] = group
    return groups


def merge_task(fragments: Iterable[tuple[tuple, Fragment]], plan, formats) -> list[ShardTask]:
    """(dest, fragment) pairs of one merge task (a shard, or a group of small ones) -> a
    ShardTask per shard, in dest order."""
    by_dest: dict[tuple, list] = {}
    for dest, fragment in fragments:
        by_dest.setdefault(tuple(dest), []).append(fragment)
    return [shard_task((dest, by_dest[dest]), plan, formats) for dest in sorted(by_dest)]


def merge_shards(tasks: list[ShardTask], out: str) -> list[dict]:
    """Shards' fragments -> their final file(s) in OUT, each staging file read once for the
    task. Returns each shard's metadata."""
    if len(tasks) == 1:  # no local name holds the fragments' table: write_shard frees it once sorted
        return [write_shard(tasks[0], read_fragments(tasks[0].fragments) if tasks[0].fragments else None, out)]
    tables = read_fragment_groups([t.fragments for t in tasks])
    infos = [write_shard(t, tables[i], out, quiet=True) for i, t in enumerate(tasks)]
    first, last = infos[0]["paths"], infos[-1]["paths"]
    fmt = next(iter(first))
    log.info("wrote %d shards, %s .. %s (%d records)", len(infos), first[fmt], last[fmt],
             sum(i["records"] for i in infos))
    return infos


def write_shard(task: ShardTask, table, out: str, quiet: bool = False) -> dict:
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
    if not quiet:
        log.info("wrote %s (%d records)", " + ".join(paths.values()), table.num_rows)
    return {"dest": list(dest), "records": table.num_rows, "paths": paths,
            "clusters": {int(c): int(n) for c, n in zip(clusters, counts, strict=True)}}


def _write(out: str, rel: str, data) -> None:
    path = FileSystems.join(out, rel)
    mkdirs(path.rsplit("/", 1)[0])
    write_atomic(path, data)
