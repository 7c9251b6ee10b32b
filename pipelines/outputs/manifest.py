"""The end of a run: empty shards, the checks of every count, removal of our earlier files, report.png, and manifest.json last (`finalize`)."""

from __future__ import annotations

from collections import defaultdict

from pipelines.outputs import output_dir
from pipelines.outputs.formats import write_plot_then_document
from pipelines.outputs.layout import HELD_OUT, expected_dests, payload_info
from pipelines.outputs.merge import shard_task, write_shard

SCHEMA_VERSION = 2  # 2: one tree per format (OUT/parquet/..., OUT/tfrecord/...)


def finalize(infos: list[dict], plan, cfg, run_info: dict, read_total: int, duplicate_ids: int) -> dict:
    """Missing (empty) shards, checks, removal of what earlier runs of ours left, report.png,
    manifest.json last.

    `read_total` is counted as the last pass reads; the files' counts must add up to it.
    """
    by_dest = {tuple(i["dest"]): i for i in infos}
    for dest in expected_dests(plan):
        if dest not in by_dest:
            by_dest[dest] = write_shard(shard_task((dest, []), plan, cfg.output.formats), None, cfg.output.folder)
    manifest = build_manifest(by_dest, plan, cfg, run_info, duplicate_ids)
    t = manifest["totals"]
    if t["read"] != read_total:
        raise RuntimeError(
            f"internal: the last pass read {read_total} records, but the files hold rejected {t['rejected']} "
            f"+ held out {t['holdout']} + train input {t['train_input']} = {t['read']}; no manifest written."
        )
    output_dir.remove_stale(cfg.output.folder, {p for i in by_dest.values() for p in i["paths"].values()})
    from pipelines.outputs.report import write_report_png

    write_plot_then_document(cfg.output.folder, "report.png", write_report_png, "manifest.json", manifest)
    output_dir.remove_staging(cfg.output.folder)  # this run's staging, and any crashed run's
    return manifest


def ids_info(cfg, duplicate_ids: int) -> dict:
    """The manifest's "ids" entry: where ids came from, and how many valid records repeat one."""
    return {"column": cfg.read.id_column, "duplicates": int(duplicate_ids)}


def build_manifest(by_dest: dict, plan, cfg, run_info: dict, duplicate_ids: int = 0) -> dict:
    formats = list(cfg.output.formats)
    classes = []
    for label in plan.order:
        cp = plan.classes[label]
        infos = [by_dest[("train", cp.index, s)] for s in range(cp.shards)]
        written = defaultdict(int)
        for info in infos:
            for c, n in info["clusters"].items():
                written[int(c)] += n
        output = sum(i["records"] for i in infos)
        if output != cp.target:
            raise RuntimeError(f"internal: class {label!r} wrote {output} records, target {cp.target}")
        clusters = []
        for c in cp.clusters:
            if written.get(c.id, 0) != c.quota:
                raise RuntimeError(f"internal: class {label!r} cluster {c.id} wrote {written.get(c.id, 0)}, "
                                   f"quota {c.quota}")
            clusters.append({**c._asdict(), "output": c.quota})
        classes.append({
            "label": label, "index": cp.index, "dir": cp.dir,
            "input": cp.count, "holdout": cp.holdout, "val": cp.val, "test": cp.test,
            "train_input": cp.train,
            "target": cp.target, "output": output, "clusters": clusters,
            "shards": {fmt: [{"path": i["paths"][fmt], "records": i["records"]} for i in infos] for fmt in formats},
        })
    held = {}
    for split in HELD_OUT:
        infos = [by_dest[(split, 0, s)] for s in range(plan.held_shards(split))]
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
        "payload": payload_info(cfg, plan.dim),
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
