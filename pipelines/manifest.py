"""The plan between pass 3 and pass 4, shard paths, shard merging, and the manifest written last.

Plain functions over small data (histograms, shard metadata); the Beam job calls
them from single elements. The manifest's keys are the contract the trainer reads
(docs/ARCHITECTURE.md, "Contracts").
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from functools import partial

import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from pipelines import output_dir, shards
from pipelines.errors import JobError
from pipelines.options import as_flags
from transforms import hashing, selection
from transforms import plan as planning

SCHEMA_VERSION = 2  # 2: one tree per format (OUT/parquet/..., OUT/tfrecord/...)
SUFFIX = {"parquet": ".parquet", "tfrecord": ".tfrecord.gz"}
HELD_OUT = ("val", "test")  # splits held out before resampling, never resampled
log = logging.getLogger("pipelines.balance")


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


ROW_OVERHEAD = 40  # id, label, cluster and framing, per row


def payload_schema(cfg, dim: int) -> dict[str, int | None]:
    """Payload columns of the shards: name -> vector length (None for bytes)."""
    if cfg.payload == "features":
        return {"features": dim}
    return {"image": None, "format": None, **({"embedding": dim} if cfg.keep_embeddings else {})}


def payload_info(cfg, dim: int) -> dict:
    """The manifest's "payload" entry."""
    if cfg.payload == "features":
        return {"kind": "features", "dim": dim}
    return {"kind": "image", "cluster_on": cfg.cluster_on, "vector_dim": dim,
            "embedding": dim if cfg.keep_embeddings else None}


def make_plan(histograms, models: dict, cfg, dim: int) -> dict:
    """Quotas, copy rules and shard counts from the pass-2 histograms."""
    hist = defaultdict(dict)
    for (label, cluster), h in histograms:
        hist[label][cluster] = h
    labels = sort_labels(models)
    missing = [x for x in labels if x not in hist]
    if missing:
        raise RuntimeError(f"internal: classes without training histograms: {missing}")
    sizes = {}
    for label in labels:
        k = max(hist[label]) + 1
        sizes[label] = np.array([int(hist[label][c].sum()) if c in hist[label] else 0 for c in range(k)])
    try:
        plans = planning.plan_quotas(sizes, cfg.strategy, cfg.target, cfg.target_counts)
    except planning.SpecError as e:
        raise JobError(as_flags(e)) from None
    dirs = class_dirs(labels)
    target_bytes = cfg.shard_mb << 20
    classes = {}
    for cp in plans:
        label = cp.label
        model = models[label]
        if cp.train_input != model["train"]:
            raise RuntimeError(
                f"internal: class {label!r} has {cp.train_input} training records in pass 2 and "
                f"{model['train']} in pass 1; the input changed while the job ran?"
            )
        bits = selection.bucket_bits(model["train"])
        rules = {c: selection.group_rule(hist[label][c], bits, cp.quotas[c]) for c in hist[label]}
        classes[label] = {
            "label": label, "index": cp.index, "dir": dirs[label],
            "count": model["count"], "train": cp.train_input, "holdout": model["count"] - cp.train_input,
            "val": model["val"], "test": model["test"],
            "target": cp.target,
            "shards": planning.shard_count(cp.target, _row_bytes(model), target_bytes, cfg.num_shards),
            "clusters": [{"id": c, "input": int(n), "quota": int(q)}
                         for c, (n, q) in enumerate(zip(cp.cluster_sizes, cp.quotas, strict=True))],
            "rules": rules,
        }
    held_bytes = {split: sum(_row_bytes(models[x]) * classes[x][split] for x in labels) for split in HELD_OUT}
    log.info("plan (%s): %d classes, %d training records -> %d to write", cfg.strategy, len(classes),
             sum(c["train"] for c in classes.values()), sum(c["target"] for c in classes.values()))
    return {
        "order": labels, "classes": classes, "dim": dim, "payload": payload_schema(cfg, dim),
        "val_shards": planning.shard_count(held_bytes["val"], 1, target_bytes),
        # no test/ folder at all without --test_fraction
        "test_shards": planning.shard_count(held_bytes["test"], 1, target_bytes) if cfg.test_fraction > 0 else 0,
    }


def _row_bytes(model: dict) -> int:
    return model["bytes"] // max(1, model["count"]) + ROW_OVERHEAD


def shard_paths(dest: tuple, plan: dict, formats) -> dict[str, str]:
    """Relative paths (per format) of a destination's final shard."""
    split, index, shard = dest
    if split == "rejected":
        return {"jsonl": f"rejected/{shards.shard_name(0, 1)}.jsonl"}
    if split in HELD_OUT:
        folder, count = split, plan[f"{split}_shards"]
    else:
        cp = plan["classes"][plan["order"][index]]
        folder, count = f"train/{cp['dir']}", cp["shards"]
    return {fmt: f"{fmt}/{folder}/{shards.shard_name(shard, count)}{SUFFIX[fmt]}" for fmt in formats}


def merge_shard(dest: tuple, fragments: list[str], plan: dict, out: str, formats) -> dict:
    """Fragments of one destination -> its final file(s) in OUT. Returns the shard's metadata."""
    # No local name holds the fragments' table: write_shard frees it once sorted.
    return write_shard(dest, shards.read_fragments(fragments) if fragments else None,
                       shard_paths(dest, plan, formats), plan, out)


def merge_group(group: tuple, plan: dict, out: str, formats) -> dict:
    """(dest, its fragments) -> merge_shard."""
    dest, fragments = group
    return merge_shard(dest, fragments, plan, out, formats)


def write_shard(dest, table, paths, plan, out: str) -> dict:
    if dest[0] == "rejected":
        table = table if table is not None else shards.REJECTED_SCHEMA.empty_table()
        _write(out, paths["jsonl"], shards.jsonl_bytes(table))
        return {"dest": list(dest), "records": table.num_rows, "paths": paths, "clusters": {},
                "by_label": shards.rejected_by_label(table)}
    if table is None:
        table = shards.row_schema(plan["payload"]).empty_table()
    table = shards.output_table(table, plan["order"], by_label=dest[0] in HELD_OUT)
    for fmt, rel in paths.items():
        # Parquet streams into the file; TFRecord is encoded whole, then written.
        _write(out, rel, partial(shards.write_parquet, table) if fmt == "parquet" else shards.tfrecord_bytes(table))
    clusters, counts = np.unique(table.column("cluster").to_numpy(), return_counts=True)
    log.info("wrote %s (%d records)", " + ".join(paths.values()), table.num_rows)
    return {"dest": list(dest), "records": table.num_rows, "paths": paths,
            "clusters": {int(c): int(n) for c, n in zip(clusters, counts, strict=True)}}


def _write(out: str, rel: str, data) -> None:
    path = FileSystems.join(out, rel)
    shards.mkdirs(path.rsplit("/", 1)[0])
    shards.write_atomic(path, data)


def planned_paths(plan: dict, formats) -> list[str]:
    """Every file the plan will write, relative to OUT (listed before any is written)."""
    return sorted({p for dest in expected_dests(plan) for p in shard_paths(dest, plan, formats).values()})


def expected_dests(plan: dict) -> list[tuple]:
    dests = [(split, 0, s) for split in HELD_OUT for s in range(plan[f"{split}_shards"])] + [("rejected", 0, 0)]
    for label in plan["order"]:
        cp = plan["classes"][label]
        dests += [("train", cp["index"], s) for s in range(cp["shards"])]
    return dests


def finalize(infos: list[dict], plan: dict, cfg, run_info: dict, read_total: int, duplicate_ids: int) -> dict:
    """Missing (empty) shards, checks, removal of what earlier runs of ours left, report.png,
    manifest.json last.

    `read_total` is counted as the last pass reads; the files' counts must add up to it.
    """
    by_dest = {tuple(i["dest"]): i for i in infos}
    for dest in expected_dests(plan):
        if dest not in by_dest:
            by_dest[dest] = write_shard(dest, None, shard_paths(dest, plan, cfg.formats), plan, cfg.output)
    manifest = build_manifest(by_dest, plan, cfg, run_info, duplicate_ids)
    t = manifest["totals"]
    if t["read"] != read_total:
        raise RuntimeError(
            f"internal: the last pass read {read_total} records, but the files hold rejected {t['rejected']} "
            f"+ held out {t['holdout']} + train input {t['train_input']} = {t['read']}; no manifest written."
        )
    output_dir.remove_stale(cfg.output, {p for i in by_dest.values() for p in i["paths"].values()})
    from pipelines.report import write_report_png

    shards.write_plot_then_document(cfg.output, "report.png", write_report_png, "manifest.json", manifest)
    output_dir.remove_staging(cfg.output)  # this run's staging, and any crashed run's
    return manifest


def ids_info(cfg, duplicate_ids: int) -> dict:
    """The manifest's "ids" entry: where ids came from, and how many valid records repeat one."""
    return {"column": cfg.id_column, "duplicates": int(duplicate_ids)}


def build_manifest(by_dest: dict, plan: dict, cfg, run_info: dict, duplicate_ids: int = 0) -> dict:
    formats = list(cfg.formats)
    classes = []
    for label in plan["order"]:
        cp = plan["classes"][label]
        infos = [by_dest[("train", cp["index"], s)] for s in range(cp["shards"])]
        written = defaultdict(int)
        for info in infos:
            for c, n in info["clusters"].items():
                written[int(c)] += n
        output = sum(i["records"] for i in infos)
        if output != cp["target"]:
            raise RuntimeError(f"internal: class {label!r} wrote {output} records, target {cp['target']}")
        clusters = []
        for c in cp["clusters"]:
            if written.get(c["id"], 0) != c["quota"]:
                raise RuntimeError(f"internal: class {label!r} cluster {c['id']} wrote "
                                   f"{written.get(c['id'], 0)}, quota {c['quota']}")
            clusters.append({**c, "output": c["quota"]})
        classes.append({
            "label": label, "index": cp["index"], "dir": cp["dir"],
            "input": cp["count"], "holdout": cp["holdout"], "val": cp["val"], "test": cp["test"],
            "train_input": cp["train"],
            "target": cp["target"], "output": output, "clusters": clusters,
            "shards": {fmt: [{"path": i["paths"][fmt], "records": i["records"]} for i in infos] for fmt in formats},
        })
    held = {}
    for split in HELD_OUT:
        infos = [by_dest[(split, 0, s)] for s in range(plan[f"{split}_shards"])]
        records = sum(i["records"] for i in infos)
        if records != sum(c[split] for c in classes):
            raise RuntimeError(f"internal: {split}/ holds {records} records, the classes' {split} counts "
                               f"{sum(c[split] for c in classes)}")
        held[split] = {"records": records,
                       "shards": {fmt: [{"path": i["paths"][fmt], "records": i["records"]} for i in infos]
                                  for fmt in formats} if infos else {}}
    holdout = sum(c["holdout"] for c in classes)
    rejected = by_dest[("rejected", 0, 0)]["records"]
    by_label = by_dest[("rejected", 0, 0)]["by_label"]
    train_input = sum(c["train_input"] for c in classes)
    return {
        "schema_version": SCHEMA_VERSION,
        "seed": cfg.seed,
        "options": cfg.to_json(),
        "payload": payload_info(cfg, plan["dim"]),
        "formats": formats,
        "totals": {"read": rejected + holdout + train_input, "rejected": rejected, "holdout": holdout,
                   "val": held["val"]["records"], "test": held["test"]["records"],
                   "train_input": train_input, "output": sum(c["output"] for c in classes)},
        "classes": classes,
        "val": held["val"],
        "test": held["test"],
        "ids": ids_info(cfg, duplicate_ids),
        "rejected": {"records": rejected, "path": "rejected/",
                     "by_label": by_label},  # rejected records per label as read ("None": no label)
        "run": run_info,
    }
