"""Pass 4's fragments in staging: rows tables (`rows_table`), `FragmentWriter` (one per cache file, flushed by size), `stable_name` (a staging file's name from its unit, place and rows, so a retried bundle writes the same files), Arrow IPC."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from transforms import storage
from transforms.records import rejected_table

FLUSH_BYTES = 64 << 20  # buffered bytes per worker before fragments are flushed


def row_schema(payload: dict[str, int | None]) -> pa.Schema:
    """Fragment rows of train/ and val/; payload: column -> vector length (None: not a vector)."""
    fields = [("id", pa.string()), ("order", pa.uint64()), ("label", pa.int32()), ("cluster", pa.int32())]
    for name, dim in payload.items():
        fields.append((name, pa.list_(pa.float32(), dim) if dim else PAYLOAD_TYPES[name]))
    return pa.schema(fields)


PAYLOAD_TYPES = {"image": pa.binary(), "format": pa.string()}


def rows_table(id, order, label, cluster, **payload) -> pa.Table:  # noqa: A002
    """Fragment rows: id, order, label, cluster and the payload columns (vectors or bytes)."""
    arrays = [pa.array(id, pa.string()), pa.array(order, pa.uint64()), pa.array(label, pa.int32()),
              pa.array(cluster, pa.int32())]
    dims = {}
    for name, values in payload.items():
        if name in PAYLOAD_TYPES:
            arrays.append(pa.array(values, PAYLOAD_TYPES[name]))
            dims[name] = None
        else:
            arrays.append(vector_array(values))
            dims[name] = values.shape[1]
    return pa.Table.from_arrays(arrays, schema=row_schema(dims))


def vector_array(x: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(x, np.float32).ravel()), x.shape[1])


def mkdirs(path: str) -> None:
    try:
        FileSystems.mkdirs(path)
    except OSError:
        pass  # exists already


def delete(paths: list[str]) -> None:
    storage.delete(paths)


def stable_name(unit, seq: int, tables: list[pa.Table]) -> str:
    """A staging file's name part, from what it holds: the unit it came from (None where a
    bundle's elements are not one unit), its place among that unit's files, and its rows'
    identities (the columns key, order, row and source, when present: 8 bytes or so a row).

    A retried or recomputed bundle writes the same rows in the same order, so the same
    names. The job's writers name their unit (a cache file's name, an input unit, a
    boundary group) wherever the work has one; only the rejected records of a bundle go
    without (their source and row identify each record). `key` and `order` hash a
    record's id with its content, so two files of one unit and flush share a name only if
    they hold the same records."""
    h = hashlib.blake2b(repr((unit, seq)).encode(), digest_size=12)
    for table in tables:
        h.update(struct.pack("<q", table.num_rows))
        for name in ("key", "order", "row"):
            if name in table.column_names:
                h.update(np.ascontiguousarray(table.column(name).to_numpy()).tobytes())
        if "source" in table.column_names:
            h.update("\x00".join(map(str, table.column("source").to_pylist())).encode())
    return h.hexdigest()


class FragmentWriter:
    """Buffers rows per destination (split, class, shard); flushes them as fragment files,
    named by `stable_name` (from `unit`, the flush and the rows) and written atomically.

    Rows arrive as columns (numpy arrays); a table is built once per fragment.
    """

    def __init__(self, staging: str, flush_bytes: int | None = None, unit=None):
        self.staging, self.unit, self.flushes = staging, unit, 0
        self.flush_bytes = flush_bytes or FLUSH_BYTES
        self.buffers: dict[tuple, list[dict]] = {}
        self.buffered = 0
        self.written: list[tuple[tuple, str, int]] = []

    def add(self, dest: tuple, columns: dict) -> None:
        """Rows for one destination: {"id", "order", "label", "cluster", "features"} or rejected columns."""
        n = len(next(iter(columns.values())))
        if n == 0:
            return
        self.buffers.setdefault(dest, []).append(columns)
        self.buffered += sum(getattr(v, "nbytes", 8 * n) for v in columns.values())
        if self.buffered >= self.flush_bytes:
            self._write()

    def add_split(self, split: str, index: int, shard: np.ndarray, columns: dict) -> None:
        """Rows of one class (or val) spread over shards: one sort, one gather per column,
        then a slice (a view) per shard.

        `columns`: name -> an array with one value per row, or (array, rows) for array[rows]
        (gathered once, straight into shard order)."""
        order = np.argsort(shard, kind="stable")
        ordered = shard[order]
        gathered = {k: v[0][v[1][order]] if isinstance(v, tuple) else v[order] for k, v in columns.items()}
        bounds = [0, *(np.flatnonzero(np.diff(ordered)) + 1).tolist(), len(ordered)]
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            if b > a:
                self.add((split, index, int(ordered[a])), {k: v[a:b] for k, v in gathered.items()})

    def drain(self) -> list[tuple[tuple, str, int]]:
        """Fragments written since the last drain."""
        done, self.written = self.written, []
        return done

    def flush(self) -> list[tuple[tuple, str, int]]:
        """Writes every buffer; returns all fragments written since the last drain."""
        self._write()
        return self.drain()

    def _write(self) -> None:
        for dest, parts in self.buffers.items():
            # One record batch per buffered part: the merge reads them as one table, so
            # nothing is concatenated here.
            tables = [rejected_table(p) if dest[0] == "rejected" else rows_table(**p) for p in parts]
            name = stable_name((self.unit, dest), self.flushes, tables)
            path = FileSystems.join(self.staging, f"{'-'.join(map(str, dest))}-{name}.arrow")
            write_ipc(path, tables)
            self.written.append((dest, path, sum(t.num_rows for t in tables)))
        self.buffers.clear()
        self.buffered = 0
        self.flushes += 1


def write_ipc(path: str, tables: list[pa.Table]) -> None:
    """Tables of one schema as one Arrow IPC stream (a staging file), one after another, uncopied;
    never seen half-written (`storage.writing`)."""
    with storage.writing(path) as f, pa.ipc.new_stream(f, tables[0].schema) as w:
        for table in tables:
            w.write_table(table)


def read_fragments(paths: list[str]) -> pa.Table:
    tables = []
    for path in sorted(paths):
        with storage.open_read(path) as f:
            tables.append(pa.ipc.open_stream(f).read_all())
    return pa.concat_tables(tables)
