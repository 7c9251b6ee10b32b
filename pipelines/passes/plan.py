"""The plan between pass 3 and pass 4: targets, per-(class, cluster) quotas and copy rules, shard counts (`make_plan`), and the payload the shards carry."""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

from pipelines.config import as_flags
from pipelines.errors import JobError
from pipelines.outputs.layout import HELD_OUT, class_dirs, sort_labels
from transforms import plan as planning
from transforms import selection

log = logging.getLogger("pipelines.balance")


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
