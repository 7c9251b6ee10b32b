"""Balance an imbalanced corpus: per-class k-means, exact cluster-balanced shards.

    python -m pipelines.balance                        # builds and balances the demo corpus
    python -m pipelines.balance --input 'data/*.parquet' --output out/ \\
        [--strategy cluster] [--output_format both] [--test_fraction 0.1] [any Beam flag, e.g. --runner=...]

Reads Parquet, TFRecord, CSV or image folders; writes OUT/parquet/{train,val,test}/ and/or
OUT/tfrecord/{train,val,test}/, OUT/rejected/, OUT/report.png and OUT/manifest.json (last:
its presence means the output is complete). Passes 1 to 3 are pipelines/analysis.py;
this module plans, resamples (pass 4, pipelines/resample.py), merges the shards and
writes the manifest. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import argparse
import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines.config import BalanceConfig
from pipelines.job import driver
from pipelines.job.flags import add_arguments
from pipelines.outputs import output_dir
from pipelines.outputs.fragments import delete, mkdirs
from pipelines.outputs.layout import STAGING, planned_paths
from pipelines.outputs.manifest import finalize
from pipelines.outputs.merge import merge_shards, merge_task
from pipelines.outputs.report import ids_note, summary_table
from pipelines.parallel import ParallelMap
from pipelines.passes.analysis import analyze
from pipelines.passes.plan import make_plan
from pipelines.passes.resample import Resample, resample
from transforms.flag_parser import FlagParser


def build(p: beam.Pipeline, cfg: BalanceConfig, staging: str, dim, warnings=(), scratch: str | None = None
          ) -> beam.PCollection:
    """The job's graph on pipeline `p`; returns the PCollection of the manifest. `staging`
    holds the run's lists; `scratch` (default: `staging`) its record cache and fragments."""
    scratch = scratch or staging
    a = analyze(p, cfg, scratch, dim)
    plan = a.histograms | "Plan" >> beam.Map(make_plan, a.models, cfg, a.dim)
    # The paths this run will write go on its list before any is written (see output_dir).
    plan = beam.pvalue.AsSingleton(plan | "ListIntent" >> beam.Map(list_intent, cfg.output.formats, staging))
    files, rejected, counted = a.over_cache(4, resample, cfg.holdout, cfg.output.keep_embeddings, scratch, a.models,
                                            plan, count=True, tags=("boundary",))
    out, formats = cfg.output.folder, cfg.output.formats
    return (
        (files.out, files.boundary, rejected)
        | "Pass4Resample" >> Resample(cfg.seed, cfg.output.keep_embeddings, scratch, plan)
        | "GroupFragments" >> beam.GroupByKey()
        | "Tasks" >> beam.Map(lambda group, plan: merge_task([f for part in group[1] for f in part], plan, formats),
                              plan)
        | "MergeShards" >> beam.ParDo(ParallelMap(merge_shards), out)
        | "ShardInfos" >> beam.FlatMap(lambda infos: infos)
        | "CollectShards" >> beam.combiners.ToList()
        | "Finalize" >> beam.Map(finalize, plan, cfg, {"beam": beam.__version__, "warnings": list(warnings)},
                                 beam.pvalue.AsSingleton(counted), beam.pvalue.AsSingleton(a.duplicate_ids))
    )


def list_intent(plan, formats, staging: str):
    output_dir.record_intent(staging, planned_paths(plan, formats))
    return plan


def parser() -> argparse.ArgumentParser:
    ap = FlagParser(
        prog="python -m pipelines.balance",
        description="Balance an imbalanced corpus with per-class k-means and exact, "
        "cluster-balanced resampling (Apache Beam). Without --input, builds and balances "
        "a long-tailed demo corpus from scikit-learn's digits.",
        epilog="Any Apache Beam option passes through, e.g. --runner=DataflowRunner --project=... "
        "or --direct_running_mode=multi_processing --direct_num_workers=2.",
    )
    add_arguments(ap)
    return ap


def prepare_output(out: str) -> str:
    """Lists the files of the manifest this run replaces (they are ours to remove later), marks
    OUT incomplete (no manifest.json), and returns this run's fresh staging folder."""
    staging = FileSystems.join(out, STAGING, uuid.uuid4().hex)
    output_dir.record_previous(out, staging)
    delete([FileSystems.join(out, "manifest.json")])
    return staging


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """Runs the job; returns the manifest. `test_pipeline` lets tests inject a pipeline."""
    job = driver.configure(argv, parser(), "balanced")
    cfg = job.cfg
    if job.dry_run:  # DataflowRunner --dry_run=True translates and stages without touching OUT
        done = driver.execute(job, build, FileSystems.join(cfg.output.folder, STAGING, "dry-run"), "manifest.json",
                              test_pipeline)
    else:
        mkdirs(cfg.output.folder)
        with output_dir.Lock(cfg.output.folder, "pipelines.balance") as lock, \
                driver.on_interrupt(driver.interrupted_message(cfg.output.folder, "manifest.json"), lock.release):
            done = driver.execute(job, build, prepare_output(cfg.output.folder), "manifest.json", test_pipeline)
    if done is None:
        return {}
    manifest, result, seconds = done
    report(manifest, cfg, result, seconds)
    return manifest


def report(manifest: dict, cfg: BalanceConfig, result, seconds: float) -> None:
    print()
    print(summary_table(manifest))
    if ids_note(manifest):
        print(ids_note(manifest))
    for w in manifest["run"].get("warnings", []):
        print(f"warning: {w}")
    found = driver.counters(result)
    if found:
        print("Beam counters: " + ", ".join(f"{k}={v}" for k, v in sorted(found.items())))
    out = cfg.output.folder
    print(f"\nDone in {seconds:.1f}s. Output in {out}/:")
    print(f"  manifest.json  the contract: classes, counts, every shard ({', '.join(manifest['formats'])})")
    trees = "{" + ",".join(manifest["formats"]) + "}" if len(manifest["formats"]) > 1 else manifest["formats"][0]
    print(f"  {trees}/  one folder tree per format:")
    print(f"    train/       {manifest['totals']['output']} records in {len(manifest['classes'])} class folders")
    print(f"    val/         {manifest['val']['records']} held-out records, never resampled")
    if manifest["test"]["records"]:
        print(f"    test/        {manifest['test']['records']} held-out records for the final score, "
              "never read by training")
    print(f"  rejected/      {manifest['rejected']['records']} rejected records with their reasons")
    print("  report.png     class sizes before and after, cluster sizes per class")


def main() -> None:
    driver.main(run)


if __name__ == "__main__":
    main()
