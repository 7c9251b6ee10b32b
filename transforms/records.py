"""Record batches: columnar dicts of numpy arrays, and their validation.

Readers turn whatever they read into a *raw batch*; `validate` splits it into a
*good batch* (ready for the pipeline) and a *rejected batch* (each row with the
reason a person can act on). Nothing is dropped: every raw row ends in one of the two.

raw batch
  source  str            the file the rows came from
  row     int64[n]       row number inside that file (0-based; -1 if unknown)
  id      object[n]|None the input's ids, if it has an id column
  label   object[n]      label text (integer labels in decimal), None if missing
  values  float32[m]     all feature values, concatenated (ragged)
  lengths int64[n]       values per row; -1 where the features are missing
  errors  object[n]      a reason already found by the reader, else None

good batch
  id str[n], key uint64[n], label str[n], features float32[n, D]

rejected batch
  source str[n], row int64[n], id object[n], label object[n], reason str[n]
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms import hashing


def label_strings(column: pa.Array) -> np.ndarray:
    """Label column to an object array of str (None where missing)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_floating(column.type):
        whole = pc.equal(pc.floor(column), column)
        if pc.all(pc.or_kleene(whole, pc.is_null(column))).as_py():
            column = column.cast(pa.int64())
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        column = column.cast(pa.string())
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        column = column.cast(pa.string())
    return column.to_numpy(zero_copy_only=False).astype(object, copy=False)


def ragged_from_list(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(values float32, lengths int64 with -1 for null) from an Arrow list column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    lengths = pc.list_value_length(column).fill_null(-1).to_numpy(zero_copy_only=False)
    values = column.flatten().cast(pa.float32(), safe=False)
    return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False), lengths.astype(np.int64)


def ragged_from_columns(columns: list[pa.Array], names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, lengths, errors) from several numeric columns, one value each."""
    n = len(columns[0]) if columns else 0
    errors = np.full(n, None, dtype=object)
    mats = []
    for name, col in zip(names, columns, strict=True):
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        vals, bad = _to_float(col)
        missing = pc.is_null(col).to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(bad & (errors == None)):  # noqa: E711 - object array
            errors[i] = f"value {col[i].as_py()!r} in column {name!r} is not a number"
        for i in np.flatnonzero(missing & (errors == None)):  # noqa: E711
            errors[i] = f"missing value in column {name!r}"
        mats.append(vals)
    x = np.stack(mats, axis=1) if mats else np.zeros((n, 0), np.float32)
    return x.ravel(), np.full(n, x.shape[1], np.int64), errors


def _to_float(col: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Column to float32 values and a mask of values that did not parse."""
    bad = np.zeros(len(col), dtype=bool)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        try:
            col = pc.cast(pc.utf8_trim_whitespace(col), pa.float64())
        except pa.ArrowInvalid:  # slow path, only for batches that hold bad text
            out = np.full(len(col), np.nan)
            for i, v in enumerate(col.to_pylist()):
                if v is None:
                    continue
                try:
                    out[i] = float(v)
                except ValueError:
                    bad[i] = True
            return out.astype(np.float32), bad
    vals = col.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    return vals.astype(np.float32), bad


def validate(raw: dict, dim: int) -> tuple[dict | None, dict | None]:
    """Splits a raw batch into (good, rejected); either may be None when empty."""
    n = len(raw["row"])
    label = raw["label"]
    lengths = raw["lengths"]
    reasons = np.array(raw["errors"], dtype=object, copy=True) if raw.get("errors") is not None else np.full(n, None, object)
    _label_reasons(label, reasons)
    free = reasons == None  # noqa: E711
    _set(reasons, free & (lengths < 0), "features are missing")
    free = reasons == None  # noqa: E711
    wrong = free & (lengths >= 0) & (lengths != dim)
    for i in np.flatnonzero(wrong):
        reasons[i] = f"feature vector has {lengths[i]} values, expected {dim}"

    # Rows of the right length: reshape their values without copying the rest.
    starts = np.concatenate([[0], np.cumsum(np.maximum(lengths, 0))[:-1]]) if n else np.zeros(0, np.int64)
    right = (lengths == dim) & (reasons == None)  # noqa: E711
    idx = np.flatnonzero(right)
    if dim and len(idx):
        gather = (starts[idx][:, None] + np.arange(dim)[None, :]).ravel()
        x = raw["values"][gather].reshape(len(idx), dim)
    else:
        x = np.zeros((len(idx), dim), np.float32)
    finite = np.isfinite(x).all(axis=1)
    for i in idx[~finite]:
        reasons[i] = "features contain NaN, inf or a missing value"
    keep = idx[finite]
    x = x[finite]

    good = None
    if len(keep):
        labels = np.asarray(label[keep], dtype=object)  # str: readers give str or None
        ids, keys = ids_and_keys(raw.get("id"), keep, lambda m: hashing.content_keys(labels[m], x[m]))
        good = {"id": ids, "key": keys, "label": labels, "features": np.ascontiguousarray(x, np.float32)}

    return good, _rejected(raw, reasons, label)


def _label_reasons(label: np.ndarray, reasons: np.ndarray) -> None:
    lab = pa.array(label, pa.string())
    missing = lab.is_null().to_numpy(zero_copy_only=False)
    empty = pc.equal(pc.utf8_trim_whitespace(lab), "").fill_null(False).to_numpy(zero_copy_only=False)
    free = reasons == None  # noqa: E711
    reasons[free & missing] = "label is missing"
    free = reasons == None  # noqa: E711
    reasons[free & empty] = "label is empty"


def ids_and_keys(ids_in, keep: np.ndarray, content_keys) -> tuple[np.ndarray, np.ndarray]:
    """Ids from the input where given, else the hex of a content hash; and their uint64 keys.

    Every random decision derives from the key. A given id is mixed with the content, so
    records that share an id (a duplicated id column) still get keys of their own and the
    output does not depend on which of them a batch held first; identical records share a
    key, and any of them is as good as another.
    """
    n = len(keep)
    if ids_in is not None:
        ids = np.asarray(ids_in[keep], dtype=object)
        id_arr = pa.array(ids, pa.string())
        no_id = pc.or_(id_arr.is_null(), pc.equal(id_arr, "")).fill_null(True).to_numpy(zero_copy_only=False)
    else:
        ids = np.full(n, None, dtype=object)
        no_id = np.ones(n, dtype=bool)
    keys = content_keys(np.ones(n, bool)) if n else np.zeros(0, np.uint64)
    if no_id.any():
        ids[no_id] = hashing.hex_ids(keys[no_id])
    if (~no_id).any():
        given = hashing.hash_strings(pa.array(list(ids[~no_id]), pa.string()))
        keys[~no_id] = hashing.mix64(given ^ keys[~no_id])
    return ids, keys


def validate_images(raw: dict, decoded: tuple) -> tuple[dict | None, dict | None]:
    """Splits a raw image batch into (good, rejected).

    `decoded` is what decoding and checking every image of the batch gave (vectors
    float32[n, D], formats, reasons: `ImageVectors.vectorize(raw["image"])`); a row is
    rejected with the first reason it has: its read error, its label, its image.
    """
    n = len(raw["row"])
    label = raw["label"]
    reasons = np.array(raw["errors"], dtype=object, copy=True) if raw.get("errors") is not None else np.full(n, None, object)
    _label_reasons(label, reasons)
    free = np.flatnonzero(reasons == None)  # noqa: E711
    vectors, formats, why = decoded if len(free) == n else (part[free] for part in decoded)
    reasons[free] = why
    ok = why == None  # noqa: E711
    keep = free[ok]
    good = None
    if len(keep):
        labels = np.asarray(label[keep], dtype=object)
        blobs = raw["image"][keep]
        ids, keys = ids_and_keys(raw.get("id"), keep, lambda m: hashing.content_keys_bytes(labels[m], blobs[m]))
        good = {"id": ids, "key": keys, "label": labels, "image": blobs, "format": formats[ok],
                "features": np.ascontiguousarray(vectors[ok], np.float32)}
    return good, _rejected(raw, reasons, label)


def _rejected(raw: dict, reasons: np.ndarray, label: np.ndarray) -> dict | None:
    bad_idx = np.flatnonzero(reasons != None)  # noqa: E711
    rejected = None
    if len(bad_idx):
        ids_in = raw.get("id")
        source = raw["source"]
        rejected = {
            "source": source[bad_idx] if isinstance(source, np.ndarray) else np.full(len(bad_idx), source, dtype=object),
            "row": np.asarray(raw["row"])[bad_idx].astype(np.int64),
            "id": ids_in[bad_idx] if ids_in is not None else np.full(len(bad_idx), None, object),
            "label": label[bad_idx],
            "reason": reasons[bad_idx],
        }
    return rejected


def _set(reasons: np.ndarray, mask: np.ndarray, text: str) -> None:
    reasons[mask] = text


def label_codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct labels in label order, each row's index into them)."""
    uniq, inverse = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    return uniq, inverse.ravel()


def group_rows(labels: np.ndarray, codes=None) -> list[tuple[str, np.ndarray]]:
    """(label, row positions) per distinct label of a batch, in label order; one sort.
    `codes`: label_codes(labels), where the caller has them."""
    uniq, inverse = codes if codes is not None else label_codes(labels)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
    return [(str(u), order[bounds[i]:bounds[i + 1]]) for i, u in enumerate(uniq)]


def take(batch: dict, index: np.ndarray) -> dict:
    """Rows `index` (mask or positions) of a columnar batch."""
    return {k: v[index] for k, v in batch.items()}


def concat(batches: list[dict]) -> dict:
    keys = batches[0].keys()
    return {k: np.concatenate([b[k] for b in batches]) for k in keys}


def size(batch: dict) -> int:
    return len(next(iter(batch.values())))


def rejected_file(source: str, reason: str) -> dict:
    """One rejected row standing for a whole unreadable file."""
    return {
        "source": np.array([source], dtype=object),
        "row": np.array([-1], dtype=np.int64),
        "id": np.array([None], dtype=object),
        "label": np.array([None], dtype=object),
        "reason": np.array([reason], dtype=object),
    }


# ---------------------------------------------------------------- rejected records as files

REJECTED_SCHEMA = pa.schema([
    ("source", pa.string()),
    ("row", pa.int64()),
    ("id", pa.string()),
    ("label", pa.string()),
    ("reason", pa.string()),
])


def rejected_table(batch: dict) -> pa.Table:
    return pa.Table.from_arrays(
        [pa.array(batch["source"], pa.string()), pa.array(batch["row"], pa.int64()),
         pa.array(batch["id"], pa.string()), pa.array(batch["label"], pa.string()),
         pa.array(batch["reason"], pa.string())],
        schema=REJECTED_SCHEMA,
    )


def jsonl_bytes(table: pa.Table) -> bytes:
    table = table.sort_by([("source", "ascending"), ("row", "ascending")])
    lines = [json.dumps(r, ensure_ascii=False) for r in table.to_pylist()]
    return ("\n".join(lines) + ("\n" if lines else "")).encode()
