"""Where the output's files go and what they carry: the staging folder, one tree per format,
class folders, shard names and paths (the layout DESIGN.md fixes), the payload columns."""

from __future__ import annotations

import re

import pyarrow as pa

from transforms import hashing

STAGING = ".staging"  # OUT/.staging/RUN/: a run's lists, record cache and fragments
SUFFIX = {"parquet": ".parquet", "tfrecord": ".tfrecord.gz"}
HELD_OUT = ("val", "test")  # splits held out before resampling, never resampled


def sort_labels(labels) -> list[str]:
    """Integer labels in numeric order, other labels in text order."""
    labels = list(labels)
    if labels and all(re.fullmatch(r"-?\d+", x) for x in labels):
        return sorted(labels, key=int)
    return sorted(labels)


MAX_DIR_BYTES = 100  # a class folder's name, well under the 255 bytes of local and object-store names


def class_dirs(labels: list[str]) -> dict[str, str]:
    """Label -> folder `class=<safe>`; names that collide get the label's index.

    A label too long for a folder name keeps a readable prefix and gets a short hash of
    the whole label; the manifest maps each label to its folder either way.
    """
    out, used = {}, set()
    for i, label in enumerate(labels):
        safe = re.sub(r"[^\w.-]", "_", label).strip(".") or "_"
        if len(f"class={safe}".encode()) > MAX_DIR_BYTES:
            tag = hashing.hex_ids(hashing.hash_strings(pa.array([label], pa.string())))[0][:12]
            prefix = safe.encode()[: MAX_DIR_BYTES - len("class=~") - len(tag) - 8].decode(errors="ignore")
            safe = f"{prefix}~{tag}"
        name = f"class={safe}"
        if name in used:
            name = f"class={safe}~{i}"
        used.add(name)
        out[label] = name
    return out


def shard_paths(dest: tuple, plan, formats) -> dict[str, str]:
    """Relative paths (per format) of a destination's final shard."""
    split, index, shard = dest
    if split == "rejected":
        return {"jsonl": f"rejected/{shard_name(0, 1)}.jsonl"}
    if split in HELD_OUT:
        folder, count = split, plan.held_shards(split)
    else:
        cp = plan.of_index(index)
        folder, count = f"train/{cp.dir}", cp.shards
    return {fmt: f"{fmt}/{folder}/{shard_name(shard, count)}{SUFFIX[fmt]}" for fmt in formats}


def planned_paths(plan, formats) -> list[str]:
    """Every file the plan will write, relative to OUT (listed before any is written)."""
    return sorted({p for dest in expected_dests(plan) for p in shard_paths(dest, plan, formats).values()})


def expected_dests(plan) -> list[tuple]:
    dests = [(split, 0, s) for split in HELD_OUT for s in range(plan.held_shards(split))] + [("rejected", 0, 0)]
    for cp in plan.classes.values():
        dests += [("train", cp.index, s) for s in range(cp.shards)]
    return dests


def shard_name(index: int, count: int) -> str:
    return f"part-{index:05d}-of-{count:05d}"


def payload_schema(cfg, dim: int) -> dict[str, int | None]:
    """Payload columns of the shards: name -> vector length (None for bytes)."""
    if cfg.payload == "features":
        return {"features": dim}
    return {"image": None, "format": None, **({"embedding": dim} if cfg.output.keep_embeddings else {})}


def payload_info(cfg, dim: int) -> dict:
    """The manifest's "payload" entry."""
    if cfg.payload == "features":
        return {"kind": "features", "dim": dim}
    return {"kind": "image", "cluster_on": cfg.images.cluster_on, "vector_dim": dim,
            "embedding": dim if cfg.output.keep_embeddings else None}
