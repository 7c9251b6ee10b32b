"""pipelines/passes/resample.py's `resample` without Beam: pass 4 over a few valid batches,
with a plan made by `make_plan` from their histograms: the fragments it writes, its counts,
and the boundary rows it leaves to be settled per group."""

from __future__ import annotations

import collections

import numpy as np
from helpers import class_models, valid_batches

from pipelines.config import BalanceConfig
from pipelines.outputs.fragments import read_fragments
from pipelines.passes.histograms import bucket_histograms
from pipelines.passes.plan import make_plan
from pipelines.passes.resample import resample
from transforms import hashing, records, selection
from transforms.stats import TEST, TRAIN, VAL

# "a" and "b" are small classes for selection.bucket_bits: 64 buckets and 16.
CFG = BalanceConfig.of(input="unused", output="unused", input_format="parquet", strategy="oversample",
                       target=3500, holdout_fraction=0.1, test_fraction=0.1, seed=3, num_shards=3)
RULE = CFG.holdout


def setup_pass(sizes=None, parts=3):
    batches = valid_batches(sizes or {"a": 3000, "b": 40}, dim=3, parts=parts, seed=1)
    models = class_models(batches, RULE)
    plan = make_plan(bucket_histograms(batches, RULE, models)[0][0], models, CFG, 3)
    return batches, models, plan


def gathered(outputs, plan) -> dict:
    """The "boundary" outputs (one per batch and part) gathered per group, as Resample's GroupByKey and settle do."""
    parts = collections.defaultdict(list)
    for o in outputs:
        if hasattr(o, "tag"):
            part, rows = o.value
            for label, in_class in records.group_rows(rows["label"]):
                for cluster in np.unique(rows["cluster"][in_class]):
                    assert part == plan.classes[label].boundary_part
                    group = records.take(rows, in_class[rows["cluster"][in_class] == cluster])
                    parts[label, int(cluster)].append({k: v for k, v in group.items() if k != "cluster"})
    return {k: records.concat(v) for k, v in parts.items()}


def fragments_of(outputs) -> list[tuple]:
    """(dest, fragment, rows) of the fragments among `outputs` (elements of (merge key,
    [(dest, fragment), ...]))."""
    return [(dest, fragment, read_fragments([fragment]).num_rows)
            for o in outputs if not hasattr(o, "tag") for dest, fragment in o[1]]


def test_resample_writes_exact_quotas_with_the_boundary_rows_left_to_settle(tmp_path):
    batches, models, plan = setup_pass()
    assert {k: c.target for k, c in plan.classes.items()} == {"a": 3500, "b": 3500}
    assert {c.shards for c in plan.classes.values()} == {3}  # --num_shards
    assert selection.bucket_bits(models["a"]["train"]) == 6 and selection.bucket_bits(models["b"]["train"]) == 4
    outputs, counts = resample(iter(batches), RULE, False, str(tmp_path), models, plan, unit="cache-1")
    fragments = fragments_of(outputs)
    boundary = gathered(outputs, plan)
    assert {o.tag for o in outputs if hasattr(o, "tag")} <= {"boundary"}

    held = sum(m["val"] + m["test"] for m in models.values())
    train = sum(m["train"] for m in models.values())
    assert counts["records_holdout"] == held and counts["records_train_input"] == train == 3040 - held
    rows = collections.Counter()
    for dest, _, n in fragments:
        rows[dest[0]] += n
    assert rows["train"] == counts["records_written"] and rows["val"] + rows["test"] == held
    assert rows["val"] == sum(m["val"] for m in models.values()) and rows["test"] == sum(m["test"] for m in models.values())

    # Written now and settled later, each class gets exactly its target.
    settled = collections.Counter()
    for (label, cluster), batch in boundary.items():
        rule = plan.classes[label].rules[cluster]
        assert rule.gathers and len(batch["key"]) == rule.in_boundary  # the whole boundary bucket, nothing else
        u = hashing.decision(batch["key"], RULE.seed, hashing.COPIES)
        assert set(selection.bucket_of(u, rule.bits)) == {rule.boundary}
        settled[label] += int(selection.settle_boundary(u, batch["id"].astype(str), rule).sum())
    written = collections.Counter()
    for dest, _, n in fragments:
        if dest[0] == "train":
            written[plan.of_index(dest[1]).label] += n
    assert {k: written[k] + settled[k] for k in plan.classes} == {"a": 3500, "b": 3500}
    assert settled["a"] > 0 and written["a"] > 0  # "a": rows written at once and a boundary bucket


def test_resample_fragments_hold_the_rows_their_destinations_name(tmp_path):
    batches, models, plan = setup_pass()
    outputs, _ = resample(iter(batches), RULE, False, str(tmp_path), models, plan, unit="cache-1")
    good = records.concat(batches)
    label_of = dict(zip(good["id"], good["label"], strict=True))
    split = {}
    for label, rows in records.group_rows(good["label"]):
        split.update(zip(good["id"][rows], RULE.split(good["key"][rows], models[label]["max_hold"]), strict=True))
    copies = collections.Counter()
    for key, pairs in (o for o in outputs if not hasattr(o, "tag")):
        assert all(plan.merge_key(dest) == key for dest, _ in pairs)  # each fragment goes to its merge task
    for dest, fragment, n in fragments_of(outputs):
        kind, index, shard = dest
        table = read_fragments([fragment])
        shards = plan.of_index(index).shards if kind == "train" else plan.held_shards(kind)
        assert table.num_rows == n and 0 <= shard < shards
        ids = table.column("id").to_pylist()
        labels = set(table.column("label").to_pylist())
        assert table.column("features").type.list_size == 3
        # the order column decides the shard
        assert set((table.column("order").to_numpy() % np.uint64(shards)).tolist()) == {shard}
        if kind == "train":
            assert labels == {index} and {label_of[i] for i in ids} == {plan.of_index(index).label}
            assert {split[i] for i in ids} == {TRAIN}
            copies.update(ids)
        else:
            assert index == 0 and set(table.column("cluster").to_pylist()) == {-1}
            assert {split[i] for i in ids} == {VAL if kind == "val" else TEST} and len(set(ids)) == n
            assert labels == {plan.classes[label_of[i]].index for i in ids}
    # rows below the boundary bucket get base + 1 copies, above it base, in it base + 1 when
    # all of it takes one more, else none yet (settled later)
    for label, base in (("a", 1), ("b", 3500 // plan.classes["b"].train)):
        rule = plan.classes[label].rules[0]
        keys = {i: k for i, k in zip(good["id"], good["key"], strict=True) if label_of[i] == label and split[i] == TRAIN}
        bucket = selection.bucket_of(hashing.decision(np.array(list(keys.values()), np.uint64), RULE.seed,
                                                      hashing.COPIES), rule.bits)
        want = {i: rule.base + 1 if b <= rule.boundary else rule.base
                for i, b in zip(keys, bucket, strict=True) if b != rule.boundary or not rule.gathers}
        assert rule.base == base and 0 < rule.boundary < (1 << rule.bits) - 1
        assert {i: c for i, c in copies.items() if label_of[i] == label} == want


def test_resample_does_not_depend_on_how_the_batches_are_cut(tmp_path):
    batches, models, plan = setup_pass(parts=1)
    again = valid_batches({"a": 3000, "b": 40}, dim=3, parts=5, seed=1)

    def summary(batches, folder):
        outputs, counts = resample(iter(batches), RULE, False, str(folder), models, plan)
        rows = collections.Counter()
        for dest, fragment, _ in fragments_of(outputs):
            t = read_fragments([fragment])
            rows.update((dest, i, o) for i, o in zip(t.column("id").to_pylist(), t.column("order").to_pylist(),
                                                     strict=True))
        boundary = {k: sorted(v["id"]) for k, v in gathered(outputs, plan).items()}
        return rows, counts, boundary

    assert summary(batches, tmp_path / "one") == summary(again, tmp_path / "five")
