"""Pass 4's fragments in staging: rows tables (`rows_table`), `FragmentWriter` (one per cache file, flushed by size), `stable_name` (a staging file's name from its unit, place and rows, so a retried bundle writes the same files), Arrow IPC."""

from __future__ import annotations

import hashlib
import struct
from typing import NamedTuple

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


class Fragment(NamedTuple):
    """A destination's rows in a staging file: record batches first .. first + count - 1."""

    path: str
    first: int
    count: int


class FragmentWriter:
    """Buffers rows per destination (split, class, shard); each flush writes them as one
    Arrow IPC file (one more for rejected records), a destination's rows in consecutive
    record batches, named by `stable_name` (from `unit`, the flush and the rows) and
    written atomically. So the files in staging grow with the bytes written, not with
    cache files x destinations (thousands of classes).

    Rows arrive as columns (numpy arrays); a table is built once per buffered part.
    """

    def __init__(self, staging: str, flush_bytes: int | None = None, unit=None):
        self.staging, self.unit, self.flushes = staging, unit, 0
        self.flush_bytes = flush_bytes or FLUSH_BYTES
        self.buffers: dict[tuple, list[dict]] = {}
        self.buffered = 0
        self.written: list[tuple[tuple, Fragment, int]] = []  # (dest, fragment, rows)

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

    def drain(self) -> list[tuple[tuple, Fragment, int]]:
        """Fragments written since the last drain."""
        done, self.written = self.written, []
        return done

    def flush(self) -> list[tuple[tuple, Fragment, int]]:
        """Writes every buffer; returns all fragments written since the last drain."""
        self._write()
        return self.drain()

    def _write(self) -> None:
        for kind in ("rows", "rejected"):  # one schema per file
            dests = sorted(d for d in self.buffers if (d[0] == "rejected") == (kind == "rejected"))
            if not dests:
                continue
            # One record batch per buffered part: nothing is concatenated here.
            tables = {d: [rejected_table(p) if kind == "rejected" else rows_table(**p) for p in self.buffers[d]]
                      for d in dests}
            every = [t for d in dests for t in tables[d]]
            name = stable_name((self.unit, kind), self.flushes, every)
            path = FileSystems.join(self.staging, f"{kind}-{name}.arrow")
            counts = iter(write_ipc(path, every))
            first = 0
            for d in dests:
                count = sum(next(counts) for _ in tables[d])
                self.written.append((d, Fragment(path, first, count), sum(t.num_rows for t in tables[d])))
                first += count
        self.buffers.clear()
        self.buffered = 0
        self.flushes += 1


def write_ipc(path: str, tables: list[pa.Table], random_access: bool = True) -> list[int]:
    """Tables of one schema as one Arrow IPC file (a staging file), one after another,
    uncopied (`random_access`: the IPC file format, whose record batches are read by
    position; else a stream); never seen half-written (`storage.writing`). Returns the
    record batches each table became."""
    new = pa.ipc.new_file if random_access else pa.ipc.new_stream
    counts = []
    with storage.writing(path) as f, new(f, tables[0].schema) as w:
        for table in tables:
            batches = table.to_batches()
            for batch in batches:
                w.write_batch(batch)
            counts.append(len(batches))
    return counts


def read_fragments(fragments: list[Fragment]) -> pa.Table:
    """A destination's rows from its fragments (record batches of staging files)."""
    return read_fragment_groups([fragments])[0]


def read_fragment_groups(groups: list[list[Fragment]]) -> list[pa.Table | None]:
    """Several destinations' rows, each from its fragments, each staging file opened once;
    None for a destination without fragments."""
    wanted: dict[str, list[tuple[int, Fragment]]] = {}
    for i, fragments in enumerate(groups):
        for fragment in fragments:
            wanted.setdefault(fragment.path, []).append((i, fragment))
    batches: dict[tuple[int, Fragment], list] = {}
    for path in sorted(wanted):
        with storage.open_read(path) as f:
            reader = pa.ipc.open_file(f)
            for i, fragment in wanted[path]:
                batches[i, fragment] = [reader.get_batch(b) for b in range(fragment.first, fragment.first + fragment.count)]
    return [pa.Table.from_batches([b for fragment in sorted(fragments) for b in batches[i, fragment]])
            if fragments else None for i, fragments in enumerate(groups)]
