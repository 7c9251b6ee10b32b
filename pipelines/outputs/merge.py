"""A shard's fragments merged into its files (`merge_group`): sorted by hash, written as Parquet and TFRecord."""

from __future__ import annotations

import logging
from functools import partial

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


def merge_shard(dest: tuple, fragments: list[str], plan, out: str, formats) -> dict:
    """Fragments of one destination -> its final file(s) in OUT. Returns the shard's metadata."""
    # No local name holds the fragments' table: write_shard frees it once sorted.
    return write_shard(dest, read_fragments(fragments) if fragments else None,
                       shard_paths(dest, plan, formats), plan, out)


def merge_group(group: tuple, plan, out: str, formats) -> dict:
    """(dest, its fragments) -> merge_shard."""
    dest, fragments = group
    return merge_shard(dest, fragments, plan, out, formats)


def write_shard(dest, table, paths, plan, out: str) -> dict:
    if dest[0] == "rejected":
        table = table if table is not None else REJECTED_SCHEMA.empty_table()
        _write(out, paths["jsonl"], jsonl_bytes(table))
        return {"dest": list(dest), "records": table.num_rows, "paths": paths, "clusters": {},
                "by_label": rejected_by_label(table)}
    if table is None:
        table = row_schema(plan.payload).empty_table()
    table = output_table(table, list(plan.order), by_label=dest[0] in HELD_OUT)
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
