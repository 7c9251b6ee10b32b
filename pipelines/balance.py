"""Balance an imbalanced corpus: per-class k-means, exact cluster-balanced shards.

    python -m pipelines.balance                        # builds and balances the demo corpus
    python -m pipelines.balance --input 'data/*.parquet' --output out/ \\
        [--strategy cluster] [--output_format both] [any Beam flag, e.g. --runner=...]

Reads Parquet, TFRecord or CSV; writes OUT/train/class=<dir>/part-*, OUT/val/,
OUT/rejected/, OUT/report.png and OUT/manifest.json (last: its presence means the
output is complete). See docs/ARCHITECTURE.md for the stages.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, TestOptions

from pipelines import image_stages, output_dir, shards, sources, stages
from pipelines import manifest as mf
from pipelines.options import (
    BalanceConfig,
    BalanceOptions,
    FlagParser,
    add_arguments,
    check_flags,
    guess_format,
)
from pipelines.report import ids_note, short_label, summary_table
from transforms import plan as planning

log = logging.getLogger("pipelines.balance")


def pass_names(cfg: BalanceConfig, resample: bool = True) -> dict[int, str]:
    """Pass number -> the name its progress lines carry, e.g. "pass 2/4 (k-means sample)"."""
    steps = [(1, "class counts")]
    if cfg.clusters > 1:  # the random strategies resample each class as one group: no k-means
        steps.append((2, "k-means sample"))
    steps.append((3, "cluster histograms" if cfg.clusters > 1 else "class histograms"))
    if resample:
        steps.append((4, "resample"))
    return {n: f"pass {i}/{len(steps)} ({what})" for i, (n, what) in enumerate(steps, 1)}


@dataclass
class Analysis:
    """Passes 1 to 3 and the plan, as pipelines.balance and pipelines.histogram both build them."""

    read: Callable  # read(n, count=False) -> (good, rejected, total read): pass n over the input
    dim: Any  # the vector length: an int, or a side input when the corpus decides it
    counts: beam.PCollection  # (label, {count, train, val, test, max_hold, bytes})
    models: Any  # side input: label -> counts and centroids
    histograms: beam.PCollection  # one list of ((label, cluster), hash-bucket histogram)
    plan: beam.PCollection  # one element: the plan (or what `planner` returned)
    rejected: beam.PCollection  # rejected batches of pass 3
    read_total: beam.PCollection  # one element: records pass 3 read
    duplicate_ids: beam.PCollection  # one element: valid records whose id repeats another's


def analyze(p: beam.Pipeline, cfg: BalanceConfig, staging: str, dim, resample: bool = True,
            planner: Callable = mf.make_plan) -> Analysis:
    """Passes 1 to 3 on pipeline `p`: class counts, centroids, cluster histograms, the plan.

    With resample=False pass 3 is the job's last and counts the records it reads in the
    Beam counters (each record is counted once per job).
    """
    names = pass_names(cfg, resample)
    if cfg.payload == "image":  # decode once in pass 1; passes 2 and 3 read its cache
        good, _, counted, index = p | "Pass1Read" >> image_stages.ReadImageCorpus(cfg, staging, names[1])
        cache = beam.pvalue.AsList(index)

        def reader(n, count):
            return p | f"Pass{n}Read" >> image_stages.ReadCache(cfg, cache, count, names[n])
    else:
        if dim is None:
            dim = beam.pvalue.AsSingleton(p | "FeatureDimension" >> stages.FeatureDimension(cfg))
        good, _, counted = p | "Pass1Read" >> stages.ReadCorpus(cfg, dim, name=names[1])

        def reader(n, count):
            return p | f"Pass{n}Read" >> stages.ReadCorpus(cfg, dim, count, names[n])

    def read(n, count=False):
        good, rejected, counted = reader(n, count)
        return good, rejected, counted | f"Pass{n}Done" >> stages.PassDone(names[n])

    _ = counted | "Pass1Done" >> stages.PassDone(names[1])
    counts = good | "Pass1ClassCounts" >> stages.ClassCounts(cfg.holdout_rule, cfg.keep_embeddings, dim)
    if resample:  # the balance job stops here on a spec the class counts refute, before any k-means
        counts = counts | "AllClasses" >> beam.combiners.ToList() | "CheckTargets" >> beam.FlatMap(check_targets, cfg)
    duplicate_ids = good | "Pass1DuplicateIds" >> stages.DuplicateIds()
    centroids = None
    if cfg.clusters > 1:  # the random strategies resample each class as one group
        good, _, _ = read(2)
        centroids = beam.pvalue.AsDict(
            good | "Pass2Centroids" >> stages.ClassCentroids(cfg, dim, beam.pvalue.AsDict(counts)))
    models = beam.pvalue.AsDict(counts | "ClassModels" >> beam.Map(stages.with_centroids, centroids))

    good, rejected, read_total = read(3, count=not resample)
    histograms = (
        good
        | "Pass3ClusterHistograms" >> stages.ClusterHistograms(cfg, models)
        | "CollectHistograms" >> beam.combiners.ToList()
    )
    plan = histograms | "Plan" >> beam.Map(planner, models, cfg, dim)
    return Analysis(read, dim, counts, models, histograms, plan, rejected, read_total, duplicate_ids)


class JobError(ValueError):
    """An error in the user's flags or data found while the job runs: reported as one line.

    Beam logs and re-wraps an exception raised in a stage unless it is already tagged
    with its step; this one is, so it reaches the command line as it was raised.
    """

    _tagged_with_step = True


def check_targets(counts: list, cfg: BalanceConfig) -> list:
    """The class counts, once the strategy, --target and --target_counts are known to fit them.

    Every check that needs only the train size per class (unknown labels in
    --target_counts, a single class, over-sampling asked to shrink a class) runs here,
    after the counting pass; the clusters only change how big the targets are.
    """
    train = {label: c["train"] for label, c in counts}
    try:
        planning.resolve_targets({x: train[x] for x in mf.sort_labels(train)}, cfg.strategy,
                                 None if cfg.target == "max" else cfg.target, cfg.target_counts)
    except ValueError as e:
        raise JobError(str(e)) from None
    return counts


def build(p: beam.Pipeline, cfg: BalanceConfig, staging: str, dim, warnings=()) -> beam.PCollection:
    """The job's graph on pipeline `p`; returns the PCollection of the manifest."""
    warnings = list(warnings)
    a = analyze(p, cfg, staging, dim)
    # The paths this run will write go on its list before any is written (see output_dir).
    plan = beam.pvalue.AsSingleton(a.plan | "ListIntent" >> beam.Map(list_intent, cfg, staging))
    good, rejected, counted = a.read(4, count=True)
    read_total = beam.pvalue.AsSingleton(counted)
    return (
        (good, rejected)
        | "Pass4Resample" >> stages.Resample(cfg, staging, a.models, plan)
        | "ByShard" >> beam.Map(lambda f: (tuple(f[0]), f[1]))
        | "GroupFragments" >> beam.GroupByKey()
        | "MergeShards" >> beam.Map(lambda kv, plan: mf.merge_shard(kv[0], list(kv[1]), plan, cfg), plan)
        | "CollectShards" >> beam.combiners.ToList()
        | "Finalize" >> beam.Map(mf.finalize, plan, cfg, {"beam": beam.__version__, "warnings": warnings}, read_total,
                                 beam.pvalue.AsSingleton(a.duplicate_ids))
    )


def list_intent(plan: dict, cfg: BalanceConfig, staging: str) -> dict:
    output_dir.record_intent(staging, mf.planned_paths(plan, cfg.formats))
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


def resolve_input(path: str, fmt: str | None) -> tuple[str, str]:
    """A folder becomes a pattern of its files; checks something matches."""
    if fmt == "images":
        if not sources.class_folders(path):
            raise ValueError(f"--input {path!r} has no class sub-folders: an image corpus is a folder "
                             "with one sub-folder of images per class.")
        return path.rstrip("/"), fmt
    pattern = path
    if _is_dir(path):
        fmt = fmt or _format_in_dir(path)
        suffix = {"parquet": "**.parquet", "csv": "**.csv", "tfrecord": "**.tfrecord*"}[fmt]
        pattern = FileSystems.join(path.rstrip("/"), suffix)
    fmt = fmt or guess_format(pattern)
    found = FileSystems.match([pattern], limits=[1])[0].metadata_list
    if not found:
        raise ValueError(f"--input {path!r} matches no {fmt} file (pattern {pattern!r}).")
    return pattern, fmt


def _is_dir(path: str) -> bool:
    return os.path.isdir(path) or path.endswith("/")


def _format_in_dir(path: str) -> str:
    files = [m.path for m in FileSystems.match([FileSystems.join(path.rstrip("/"), "**")], limits=[50])[0].metadata_list]
    for f in files:
        try:
            return guess_format(f)
        except ValueError:
            continue
    raise ValueError(f"Cannot tell the format of the files in {path!r}: pass --input_format.")


def static_dim(cfg: BalanceConfig) -> int | None:
    """The vector length when the schema or flags fix it; None means: the corpus's mode."""
    if cfg.payload == "image":
        return image_stages.vector_dim(cfg)
    if cfg.feature_dim:
        return cfg.feature_dim
    if cfg.feature_columns:
        return len(cfg.feature_columns)
    first = FileSystems.match([cfg.input], limits=[1])[0].metadata_list[0].path
    if cfg.input_format == "parquet":
        try:
            with sources.open_file(first) as f:
                schema = pq.ParquetFile(f).schema_arrow
        except Exception:  # noqa: BLE001 - the job itself reports unreadable files
            return None
        for name, flag in ((cfg.label_column, "--label_column"), (cfg.feature_column, "--feature_column")):
            if name not in schema.names:
                if cfg.reject_unreadable_files:
                    return None  # the job rejects the file
                raise ValueError(f"{first} has no column {name!r} (its columns: {schema.names}); set {flag}.")
        t = schema.field(cfg.feature_column).type
        return t.list_size if pa.types.is_fixed_size_list(t) else None
    if cfg.input_format == "csv":
        import pyarrow.csv as pacsv

        try:
            with sources.open_file(first) as f:  # pyarrow parses the header: quotes, BOM
                header = pacsv.open_csv(f, parse_options=pacsv.ParseOptions(invalid_row_handler=lambda row: "skip"),
                                        convert_options=pacsv.ConvertOptions(column_types=None)).schema.names
        except Exception:  # noqa: BLE001 - the job itself reports unreadable files
            return None
        if cfg.label_column not in header:
            if cfg.reject_unreadable_files:
                return None  # the job rejects the file
            raise ValueError(f"{first} has no column {cfg.label_column!r} (its columns: {header}); set --label_column.")
        return len([c for c in header if c not in (cfg.label_column, cfg.id_column)])
    return None


def prepare_output(out: str) -> str:
    """Lists the files of the manifest this run replaces (they are ours to remove later), marks
    OUT incomplete (no manifest.json), and returns this run's fresh staging folder."""
    staging = FileSystems.join(out, shards.STAGING, uuid.uuid4().hex)
    output_dir.record_previous(out, staging)
    shards.delete([FileSystems.join(out, "manifest.json")])
    return staging


@dataclass
class Job:
    """What both jobs start from: Beam options, the checked configuration, the vector length."""

    options: PipelineOptions
    cfg: BalanceConfig
    dim: int | None  # None: the corpus's most common vector length, found by the job
    dry_run: bool
    warnings: list[str]  # found before the run; logged at once, repeated in the summary and manifest


def configure(argv: list[str] | None, ap: argparse.ArgumentParser, demo_output: str) -> Job:
    """Flags -> Job: builds the demo corpus without --input, resolves the input, checks every value.

    `ap` (the job's own parser) answers --help and checks choices; the values come
    from BalanceOptions, so every Beam flag passes through. Without --output, the demo
    writes to DEMO_DIR/`demo_output`.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    known, _ = ap.parse_known_args(argv)  # --help, types and choices checked here
    check_flags(argv, ap)
    options = PipelineOptions(argv)
    bo = options.view_as(BalanceOptions)
    if known.input is None:
        from pipelines import demo

        output = known.output or os.path.join(known.demo_dir, demo_output)
        if known.demo == "images":
            input_path = demo.build_demo_images(os.path.join(known.demo_dir, "images"))
            bo.input_format = "images"
            print(f"demo corpus: {input_path}/ (scikit-learn digits as 80x80 PNGs in one folder per "
                  "class, long-tailed, with 2 bad files)")
        else:
            input_path = demo.build_demo_corpus(os.path.join(known.demo_dir, "corpus"))
            print(f"demo corpus: {input_path} (scikit-learn digits, long-tailed, with 3 bad rows)")
    else:
        if not known.output:
            raise ValueError(f"--output is required with --input (Received: --input {known.input!r}): "
                             "name the folder to write to, e.g. --output out/.")
        input_path, output = known.input, known.output
    pattern, fmt = resolve_input(input_path, bo.input_format)
    bo.input_format = fmt
    cfg = BalanceConfig.from_options(bo, pattern, output)
    output_dir.check_no_overlap(cfg.input, fmt == "images", cfg.output)
    output_dir.check_ours(cfg.output, bo.overwrite)
    if cfg.cluster_on == "inception_v3":
        image_stages.check_embedding_weights(cfg.embedding_weights)
    dry_run = str(options.view_as(TestOptions).dry_run).lower() == "true"
    warnings = []
    if fmt == "images":
        for label in sources.empty_class_folders(cfg.input):
            warnings.append(f"class folder {short_label(label)!r} of {cfg.input!r} is empty: Keras would list it as "
                            "a class with no images; the job has no record of it, so it is not a class of the output")
    for w in warnings:
        log.warning(w)
    return Job(options, cfg, static_dim(cfg), dry_run, warnings)


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """Runs the job; returns the manifest. `test_pipeline` lets tests inject a pipeline."""
    job = configure(argv, parser(), "balanced")
    cfg = job.cfg
    if job.dry_run:  # DataflowRunner --dry_run=True translates and stages without touching OUT
        done = execute(job, build, FileSystems.join(cfg.output, shards.STAGING, "dry-run"), "manifest.json",
                       test_pipeline)
    else:
        shards.mkdirs(cfg.output)
        with output_dir.Lock(cfg.output, "pipelines.balance"):
            done = execute(job, build, prepare_output(cfg.output), "manifest.json", test_pipeline)
    if done is None:
        return {}
    manifest, result, seconds = done
    report(manifest, cfg, result, seconds)
    return manifest


def execute(job: Job, build_graph, staging: str, written: str, test_pipeline=None):
    """Builds the graph with `build_graph(p, cfg, staging, dim)` and runs it; returns (the
    JSON document `written` in OUT, the Beam result, seconds), or None after a dry run."""
    started = time.time()
    p = test_pipeline or beam.Pipeline(options=job.options)
    build_graph(p, job.cfg, staging, job.dim, job.warnings)
    result = p.run()
    result.wait_until_finish()
    if job.dry_run:
        print(f"dry run: the graph translated and the job was prepared ({type(result).__name__}); nothing ran.")
        return None
    with FileSystems.open(FileSystems.join(job.cfg.output, written)) as f:
        return json.load(f), result, time.time() - started


def counters(result) -> dict[str, int]:
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(stages.NS))["counters"]
    except Exception:  # noqa: BLE001 - some runners report no metrics
        return {}
    out: dict[str, int] = {}
    for c in found:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    return out


def report(manifest: dict, cfg: BalanceConfig, result, seconds: float) -> None:
    print()
    print(summary_table(manifest))
    if ids_note(manifest):
        print(ids_note(manifest))
    for w in manifest["run"].get("warnings", []):
        print(f"warning: {w}")
    found = counters(result)
    if found:
        print("Beam counters: " + ", ".join(f"{k}={v}" for k, v in sorted(found.items())))
    out = cfg.output
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


def main(job=None) -> None:
    """The command line of this job (or of `job`, e.g. the histogram job's run): progress
    logging on, and expected errors as one line and exit status 2."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", force=True)
    logging.getLogger("pipelines").setLevel(logging.INFO)
    try:
        (job or run)()
    except (ValueError, sources.UnreadableFile) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
