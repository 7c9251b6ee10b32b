"""The plan between pass 3 and pass 4 (`make_plan` -> `Plan`): targets, per-(class, cluster)
quotas and copy rules, shard counts."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from pipelines.config import as_flags
from pipelines.errors import JobError
from pipelines.outputs.layout import HELD_OUT, class_dirs, payload_schema, sort_labels
from pipelines.outputs.merge import merge_groups
from transforms import plan as planning
from transforms import selection

log = logging.getLogger("pipelines.balance")


ROW_OVERHEAD = 40  # id, label, cluster and framing, per row


class ClusterQuota(NamedTuple):
    id: int
    input: int  # train records in the cluster
    quota: int  # records written from it


@dataclass(frozen=True)
class ClassPlan:
    """One class's part of the plan."""

    label: str
    index: int
    dir: str  # its folder under train/ (layout.class_dirs)
    count: int  # records read
    train: int  # train input
    holdout: int  # val + test
    val: int
    test: int
    target: int  # records written to train/
    shards: int
    clusters: tuple[ClusterQuota, ...]
    rules: dict  # cluster -> selection rule (how many copies of which rows)
    merge_group: int = -1  # small shards of many classes merge in one task (outputs.merge.merge_groups)
    boundary_part: int = 0  # the part its boundary rows are gathered in: classes in order, ~BOUNDARY_PART_ROWS a part


@dataclass(frozen=True)
class Plan:
    """What pass 4 writes, decided from the class counts and pass 3's histograms; frozen, and
    turned into JSON only by the manifest."""

    order: tuple[str, ...]  # labels, in the order of their indices
    classes: dict[str, ClassPlan]
    dim: int | None
    payload: dict[str, int | None]  # the shards' payload columns (layout.payload_schema)
    val_shards: int
    test_shards: int  # 0: no test/ folder at all

    def held_shards(self, split: str) -> int:
        return self.val_shards if split == "val" else self.test_shards

    def of_index(self, index: int) -> ClassPlan:
        return self.classes[self.order[index]]

    def merge_key(self, dest: tuple) -> tuple:
        """The merge task a destination's fragments go to: its class's group, or its own."""
        if dest[0] == "train":
            group = self.of_index(dest[1]).merge_group
            if group >= 0:
                return ("group", group)
        return tuple(dest)


def make_plan(histograms, models: dict, cfg, dim: int) -> Plan:
    """Quotas, copy rules and shard counts from the pass-2 histograms."""
    hist = defaultdict(dict)
    for (label, cluster), h in histograms.items():
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
        plans = planning.plan_quotas(sizes, cfg.plan.strategy, cfg.plan.target, cfg.plan.target_counts)
    except planning.SpecError as e:
        raise JobError(as_flags(e)) from None
    dirs = class_dirs(labels)
    target_bytes = cfg.output.shard_mb << 20
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
        classes[label] = ClassPlan(
            label=label, index=cp.index, dir=dirs[label],
            count=model["count"], train=cp.train_input, holdout=model["count"] - cp.train_input,
            val=model["val"], test=model["test"], target=cp.target,
            shards=planning.shard_count(cp.target, _row_bytes(model), target_bytes, cfg.output.num_shards),
            clusters=tuple(ClusterQuota(c, int(n), int(q))
                           for c, (n, q) in enumerate(zip(cp.cluster_sizes, cp.quotas, strict=True))),
            rules=rules,
        )
    groups = merge_groups([(cp.shards, cp.target * _row_bytes(models[label]) // cp.shards)
                           for label, cp in classes.items()])
    parts = planning.pack_in_order([sum(r.in_boundary for r in cp.rules.values() if r.gathers)
                                    for cp in classes.values()], BOUNDARY_PART_ROWS)
    classes = {label: replace(cp, merge_group=g, boundary_part=b)
               for (label, cp), g, b in zip(classes.items(), groups, parts, strict=True)}
    held_bytes = {split: sum(_row_bytes(models[x]) * getattr(classes[x], split) for x in labels) for split in HELD_OUT}
    log.info("plan (%s): %d classes, %d training records -> %d to write", cfg.plan.strategy, len(classes),
             sum(c.train for c in classes.values()), sum(c.target for c in classes.values()))
    return Plan(
        order=tuple(labels), classes=classes, dim=dim, payload=payload_schema(cfg, dim),
        val_shards=planning.shard_count(held_bytes["val"], 1, target_bytes),
        # no test/ folder at all without --test_fraction
        test_shards=planning.shard_count(held_bytes["test"], 1, target_bytes) if cfg.holdout.test_fraction > 0 else 0,
    )


# Boundary rows gathered in one part (one Beam key), about: a part's element stays bounded
# at any number of classes, while thousands of small classes share a key.
BOUNDARY_PART_ROWS = 1 << 16


def _row_bytes(model: dict) -> int:
    return model["bytes"] // max(1, model["count"]) + ROW_OVERHEAD
