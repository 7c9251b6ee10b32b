"""Statistics only: the class histogram (and cluster sizes) of a corpus, without writing shards.

    python -m pipelines.histogram                      # the demo corpus, like pipelines.balance
    python -m pipelines.histogram --input 'data/*.parquet' --output stats/ \\
        [--clusters_per_class 8] [any flag of pipelines.balance] [any Beam flag]

The first thing to run on a new corpus. It takes every flag of pipelines.balance and
builds the same passes 1 to 3 (class counts, per-class k-means, cluster histograms,
the plan), so its numbers are exactly those a balance run with the same flags puts in
its manifest. Writes OUT/histogram.json and OUT/histogram.png, nothing else.
"""

from __future__ import annotations

import argparse
import logging
import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines.config import BalanceConfig
from pipelines.job import driver
from pipelines.job.flags import add_arguments
from pipelines.outputs import output_dir
from pipelines.outputs.formats import rejected_by_label, write_plot_then_document
from pipelines.outputs.fragments import delete, mkdirs
from pipelines.outputs.layout import STAGING, payload_info, sort_labels
from pipelines.outputs.manifest import ids_info
from pipelines.outputs.report import histogram_table, ids_note, write_histogram_png
from pipelines.passes.analysis import analyze
from pipelines.passes.plan import Plan, make_plan
from transforms import plan as planning
from transforms.flag_parser import FlagParser
from transforms.records import rejected_table

SCHEMA_VERSION = 1
ALTERNATIVES = ("oversample", "undersample", "hybrid")  # K = 1: the class histogram decides them
log = logging.getLogger("pipelines.histogram")


def parser() -> argparse.ArgumentParser:
    ap = FlagParser(
        prog="python -m pipelines.histogram",
        description="Class histogram of a corpus (with --clusters_per_class > 1 and the default cluster "
        "strategy, the k-means cluster sizes per class too), and what pipelines.balance would write "
        "with the same flags. Writes OUT/histogram.json and OUT/histogram.png, no shards. Without "
        "--input, runs on the demo corpus of pipelines.balance.",
        epilog="Every flag of pipelines.balance is accepted, so that the numbers equal a balance run "
        "with the same flags (--holdout_fraction, --seed, --clusters_per_class, --kmeans_sample, "
        "--strategy, --target ... matter; the shard flags do not). Any Apache Beam option passes "
        "through, e.g. --runner=DataflowRunner --project=... or --direct_running_mode=multi_processing.",
    )
    add_arguments(ap)
    return ap


def build(p: beam.Pipeline, cfg: BalanceConfig, staging: str, dim, warnings=(), scratch: str | None = None
          ) -> beam.PCollection:
    """Passes 1 to 3 of pipelines.balance, then one step that writes the histogram. The record
    cache goes to `scratch` (default: `staging`)."""
    a = analyze(p, cfg, scratch or staging, dim, resample=False)
    plan = a.histograms | "Plan" >> beam.Map(plan_or_error, a.models, cfg, a.dim)
    by_label = (
        a.rejected
        | "RejectedByLabel" >> beam.FlatMap(rejected_labels)
        | "SumRejected" >> beam.CombinePerKey(sum)
        | "CollectRejected" >> beam.combiners.ToDict()
    )
    return a.histograms | "WriteHistogram" >> beam.Map(
        finalize, a.models, beam.pvalue.AsSingleton(plan), beam.pvalue.AsSingleton(by_label),
        beam.pvalue.AsSingleton(a.read_total), beam.pvalue.AsSingleton(a.duplicate_ids), cfg, a.dim, staging)


def plan_or_error(histograms, models, cfg, dim) -> Plan | dict:
    """The balance job's plan; a spec that does not fit the corpus becomes {"error": ...}.

    The balance job fails on such a spec; the histogram is still worth writing.
    """
    try:
        return make_plan(histograms, models, cfg, dim)
    except ValueError as e:
        return {"error": str(e)}


def rejected_labels(bad: dict):
    """Rejected batch -> (label as the manifest's rejected.by_label writes it, count)."""
    return rejected_by_label(rejected_table(bad)).items()


def histogram_doc(histograms, models: dict, plan: dict, by_label: dict, read_total: int, duplicate_ids: int,
                  cfg, dim) -> dict:
    """Everything histogram.json holds (plain data; see the module docstring)."""
    sizes: dict[str, dict[int, int]] = {label: {} for label in models}
    for (label, cluster), h in histograms.items():
        sizes[label][cluster] = int(h.sum())
    labels = sort_labels(models)
    planned = plan.classes if isinstance(plan, Plan) else {}
    classes = []
    for index, label in enumerate(labels):
        m, cp = models[label], planned.get(label)
        entry = {"label": label, "index": index, "input": m["count"], "holdout": m["count"] - m["train"],
                 "val": m["val"], "test": m["test"], "train_input": m["train"]}
        if cp is not None:
            entry["target"] = cp.target
        if cfg.plan.clusters > 1:
            k = max(sizes[label], default=-1) + 1
            quotas = {c.id: c.quota for c in cp.clusters} if cp else {}
            entry["clusters"] = [{"id": c, "input": sizes[label].get(c, 0),
                                  **({"quota": quotas[c]} if c in quotas else {})} for c in range(k)]
        classes.append(entry)
    rejected = int(sum(by_label.values()))
    holdout = sum(c["holdout"] for c in classes)
    train_input = sum(c["train_input"] for c in classes)
    if rejected + holdout + train_input != read_total:
        raise RuntimeError(f"internal: read {read_total} records, but rejected {rejected} + held out {holdout} "
                           f"+ train input {train_input} = {rejected + holdout + train_input}")
    inputs = [c["input"] for c in classes]
    doc = {
        "schema_version": SCHEMA_VERSION,
        "input": {"path": cfg.read.input, "format": cfg.read.input_format},
        "seed": cfg.seed,
        "options": cfg.to_json(),
        "payload": payload_info(cfg, dim),
        "totals": {"read": read_total, "rejected": rejected, "holdout": holdout,
                   "val": sum(c["val"] for c in classes), "test": sum(c["test"] for c in classes),
                   "train_input": train_input},
        "imbalance_ratio": round(max(inputs) / min(inputs), 4) if inputs else None,
        "classes": classes,
        "ids": ids_info(cfg, duplicate_ids),
        "rejected": {"records": rejected, "by_label": dict(sorted(by_label.items()))},
        "plan": plan_summary(plan, cfg, classes),
        "alternatives": alternatives({c["label"]: c["train_input"] for c in classes}),
        "run": {"beam": beam.__version__},
    }
    return doc


def plan_summary(plan: dict, cfg, classes: list[dict]) -> dict:
    """What pipelines.balance with these flags would write: per-class targets, total output."""
    spec = {"strategy": cfg.plan.strategy, "target": cfg.plan.target if cfg.plan.target is not None
            else planning.DEFAULT_TARGET[cfg.plan.strategy], "target_counts": cfg.plan.target_counts,
            "clusters_per_class": cfg.plan.clusters}
    if not isinstance(plan, Plan):
        return {**spec, "error": plan["error"]}
    targets = {c["label"]: c["target"] for c in classes}
    return {**spec, "targets": targets, "output": sum(targets.values())}


def alternatives(train: dict[str, int]) -> dict:
    """The random strategies with their default targets: they need only the class histogram."""
    out = {}
    for strategy in ALTERNATIVES:
        try:
            targets = planning.resolve_targets(train, strategy)
        except ValueError as e:
            out[strategy] = {"error": str(e)}
            continue
        out[strategy] = {"target": planning.DEFAULT_TARGET[strategy], "targets": targets,
                         "output": sum(targets.values())}
    return out


def finalize(histograms, models, plan, by_label, read_total, duplicate_ids, cfg, dim, staging) -> dict:
    """Writes histogram.png, then histogram.json (atomically); removes this run's staging files."""
    doc = histogram_doc(histograms, models, plan, by_label, read_total, duplicate_ids, cfg, dim)
    write_plot_then_document(cfg.output.folder, "histogram.png", write_histogram_png, "histogram.json", doc)
    output_dir.remove_run_staging(staging)  # this run's record cache; a balance run's staging stays
    return doc


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """Runs the job; returns the histogram document. `test_pipeline` lets tests inject a pipeline."""
    job = driver.configure(argv, parser(), "histogram")
    cfg = job.cfg
    staging = FileSystems.join(cfg.output.folder, STAGING, "dry-run" if job.dry_run else uuid.uuid4().hex)
    if job.dry_run:
        done = driver.execute(job, build, staging, "histogram.json", test_pipeline)
    else:
        mkdirs(cfg.output.folder)
        with output_dir.Lock(cfg.output.folder, "pipelines.histogram") as lock, \
                driver.on_interrupt(driver.interrupted_message(cfg.output.folder, "histogram.json"), lock.release):
            # a failed run must not leave an earlier run's numbers looking current
            delete([FileSystems.join(cfg.output.folder, name) for name in ("histogram.json", "histogram.png")])
            done = driver.execute(job, build, staging, "histogram.json", test_pipeline)
    if done is None:
        return {}
    doc, _, seconds = done
    report(doc, cfg, seconds)
    for w in job.warnings:
        print(f"warning: {w}")
    return doc


def report(doc: dict, cfg: BalanceConfig, seconds: float) -> None:
    print()
    print(histogram_table(doc))
    if ids_note(doc):
        print(ids_note(doc))
    t = doc["totals"]
    print(f"\nDone in {seconds:.1f}s. Output in {cfg.output.folder}/ (no shards written):")
    print(f"  histogram.json  {len(doc['classes'])} classes, {t['read']} records read, "
          "and what pipelines.balance would write")
    print("  histogram.png   records per class" + (", cluster sizes per class" if cfg.plan.clusters > 1 else ""))
    print("Next: python -m pipelines.balance with the same flags writes the balanced shards.")


def main() -> None:
    driver.main(run)


if __name__ == "__main__":
    main()
