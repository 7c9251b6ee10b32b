"""The jobs' flags: `add_arguments` (declared on Beam's PipelineOptions as `BalanceOptions`,
so every standard Beam flag passes through untouched), `check_flags` (every argument is
ours or an installed Beam runner's, with "did you mean"), `to_config` (every value checked
and resolved before anything runs, the bad one named), and where the work runs
(`runs_here`, `resolve_processes`)."""

from __future__ import annotations

import argparse
import difflib
import json

from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
)

from pipelines.config import CLUSTER_ON, OUTPUT_FORMATS, WHERE, BalanceConfig, as_flags, default
from pipelines.parallel import can_fork, local_cores
from transforms import plan as planning
from transforms.plan import STRATEGIES, parse_target
from transforms.sources import INPUT_FORMATS, guess_format


def beam_option_parser() -> argparse.ArgumentParser:
    """A parser that knows every option of every installed Beam runner and IO connector."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    try:  # runners whose options are registered only when their module is imported
        import apache_beam.runners.dask.dask_runner  # noqa: F401
    except ImportError:
        pass
    parser, seen = _BeamArgumentParser(allow_abbrev=False), set()
    pending = list(PipelineOptions.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if str(cls) not in seen:
            seen.add(str(cls))
            try:
                cls._add_argparse_args(parser)
            except argparse.ArgumentError:
                pass  # a subclass that re-adds a flag of its parent
    return parser


def check_flags(argv: list[str], own: argparse.ArgumentParser) -> None:
    """Every argument is one of the job's flags or an option of an installed Beam runner.

    Beam's own parser only logs a warning for anything else and runs the job with the
    defaults: a misspelt flag would cost a whole run.
    """
    _, unknown = own.parse_known_args(argv)
    if not unknown:
        return
    beam_parser = beam_option_parser()
    _, left = beam_parser.parse_known_args(unknown)
    if not left:
        return
    arg = left[0]
    if not arg.startswith("-"):
        raise ValueError(f"unexpected argument {arg!r}: flags take the form --name value or --name=value "
                         f"(see {own.prog} --help)")
    name = arg.split("=", 1)[0]
    known = [o for p in (own, beam_parser) for a in p._actions for o in a.option_strings if o.startswith("--")]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    raise ValueError(f"unknown flag {name}: neither a flag of this job nor an option of an installed Beam runner."
                     f"{hint} (see {own.prog} --help)")


class BalanceOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        add_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The jobs' flags; a setting's default is its spec's (pipelines/config.py), and its help
    prints it."""

    def setting(g, name: str, help: str, **kwargs) -> None:  # noqa: A002
        value = default(name)
        if isinstance(value, bool):
            g.add_argument(f"--{name}", action="store_true", help=help, **kwargs)
            return
        shown = f"{value:_}".replace("_", ",") if isinstance(value, int) and value >= 10_000 else value
        g.add_argument(f"--{name}", default=value, help=f"{help} (default {shown}).", **kwargs)

    g = parser.add_argument_group("input")
    g.add_argument("--input", default=None,
                   help="Glob or folder of the corpus. Leave out to build and balance the demo corpus.")
    g.add_argument("--input_format", default=None, choices=INPUT_FORMATS,
                   help="Format of --input (default: from the file suffix).")
    setting(g, "label_column", "Label column or feature")
    setting(g, "id_column", "Id column, used when present; else ids are a hash of the record's content")
    g.add_argument("--feature_column", default=None,
                   help="One column of float vectors (list, large_list or fixed_size_list) (default "
                        f"{default('feature_column')}, except for CSV).")
    g.add_argument("--feature_columns", default=None,
                   help="Comma-separated numeric columns that together form the vector (Parquet, CSV).")
    g.add_argument("--feature_dim", type=int, default=None,
                   help="Expected vector length (default: from the schema, else the most common length).")
    g.add_argument("--image_column", default=None,
                   help="Encoded images inside Parquet (a binary column) or TFRecord (default feature: "
                        "image/encoded). --input_format images reads a folder with one sub-folder per class.")
    setting(g, "max_pixels", "Images with more pixels are rejected before decoding", type=int)
    g.add_argument("--processes", default="auto", metavar="N|auto",
                   help="Processes forked from the launching process for the work whose Python would hold "
                        "one core: the read passes (pass 1 a unit of the input each: read, checked, images "
                        "decoded, except with --cluster_on inception_v3; passes 2 to 4 a file of the record "
                        "cache each), the k-means fits and the shard merges (0: all in the worker's own "
                        "process). They are made where every bundle runs in this process only; elsewhere "
                        "the work runs in the worker's own process. Default auto: the cores, at most 4, "
                        "when every bundle runs in this process (DirectRunner or FnApiRunner, in_memory or "
                        "multi_threading) on Linux; else 0 (Dataflow and Flink already run a worker per core).")
    setting(g, "reject_unreadable_files",
            "Reject a file that cannot be read (one rejected entry) instead of failing the job.")
    g = parser.add_argument_group("balancing")
    setting(g, "strategy", "cluster (k-means per class, Jo & Japkowicz), oversample, undersample, hybrid (every "
            "class to the target), none (shard as is)", choices=STRATEGIES)
    g.add_argument("--target", default=None,
                   help="Class target: majority, minority, mean, median, max (K_c x largest cluster), "
                        "a record count, or a ratio of the majority class in (0, 1]. Default per strategy.")
    g.add_argument("--target_counts", default=None,
                   help='JSON object of class to target, e.g. \'{"cat": 5000}\'.')
    setting(g, "clusters_per_class", "k of the per-class k-means", type=int)
    setting(g, "kmeans_sample", "Rows per class the k-means is fitted on", type=int)
    g.add_argument("--cluster_on", default=None, choices=CLUSTER_ON,
                   help="What k-means clusters: features (vectors), thumbnail (default for images) or "
                        "inception_v3 (pooled InceptionV3 embeddings, via Beam's RunInference).")
    setting(g, "thumbnail_size", "Thumbnail side in pixels", type=int)
    setting(g, "thumbnail_color", "Colour thumbnails (default grey).")
    setting(g, "embedding_weights", "InceptionV3 weights for --cluster_on inception_v3: imagenet, none or a "
            "weights file")
    setting(g, "embedding_image_size", "Side images are resized to for the embedding, at least 75", type=int)
    setting(g, "keep_embeddings", "Write the clustering vector into the shards as `embedding`.")
    setting(g, "holdout_fraction", "Share of each class written to val/ and never resampled; val/ drives the "
            "trainer's shares and picks its best epoch", type=float)
    setting(g, "test_fraction", "Share of each class written to test/, disjoint from val/, never resampled and "
            "never read by training: the honest score (0: no test split)", type=float)
    setting(g, "seed", "Seed of every random decision", type=int)
    g = parser.add_argument_group("output")
    g.add_argument("--output", default=None, help="Output folder (default for the demo: DEMO_DIR/balanced; "
                   "DEMO_DIR/histogram for pipelines.histogram).")
    g.add_argument("--overwrite", action="store_true",
                   help="Write into a non-empty --output that is not an earlier output of this job. Even then "
                        "only the job's own files are replaced or removed.")
    setting(g, "output_format", "Shard format", choices=OUTPUT_FORMATS)
    g.add_argument("--num_shards", type=int, default=None,
                   help="Shards per class (default: from the size, about --shard_mb each).")
    setting(g, "shard_mb", "Target shard size in MB", type=int)
    setting(g, "batch_size", "Rows per batch between stages", type=int)
    setting(g, "image_batch_size", "Images per batch between stages", type=int)
    setting(g, "progress_seconds", "Seconds between the progress lines each worker logs while it reads a pass "
            "(0 logs every batch)", type=float)
    g.add_argument("--demo_dir", default="demo", help="Where the demo corpus is built (default demo).")
    g.add_argument("--demo", default="images", choices=("images", "vectors"),
                   help="Demo corpus kind without --input: PNG image folders (default) or Parquet vectors.")


def to_config(o: BalanceOptions, input_path: str, output: str) -> BalanceConfig:
    """The flags checked and resolved: every bad value named before anything runs."""
    fmt = o.input_format or guess_format(input_path)
    if o.feature_column and o.feature_columns:
        raise ValueError("Pass either --feature_column or --feature_columns, not both.")
    cols = tuple(c.strip() for c in o.feature_columns.split(",") if c.strip()) if o.feature_columns else ()
    if o.feature_columns is not None and not cols:
        raise ValueError(f"--feature_columns names no column. Received: {o.feature_columns!r}")
    if fmt == "tfrecord" and cols:
        raise ValueError("TFRecord input takes --feature_column (one float-list feature), not --feature_columns.")
    images = fmt == "images" or bool(o.image_column)
    if images and fmt == "csv":
        raise ValueError("CSV cannot hold images: use --input_format images, parquet or tfrecord.")
    if images and (o.feature_column or cols):
        raise ValueError("Pass --image_column or --feature_column(s), not both: a record carries one payload.")
    feature_column = None if cols or images else (o.feature_column or ("features" if fmt != "csv" else None))
    cluster_on = o.cluster_on or ("thumbnail" if images else "features")
    if images and cluster_on == "features":
        raise ValueError("Image corpora cluster on --cluster_on thumbnail or inception_v3, not features.")
    if not images and cluster_on != "features":
        raise ValueError(f"--cluster_on {cluster_on} needs images (--input_format images or --image_column).")
    checks = [
        (o.clusters_per_class >= 1, f"--clusters_per_class must be at least 1. Received: {o.clusters_per_class}"),
        (o.kmeans_sample >= 1, f"--kmeans_sample must be at least 1. Received: {o.kmeans_sample}"),
        (0 <= o.holdout_fraction < 1, f"--holdout_fraction must be in [0, 1). Received: {o.holdout_fraction}"),
        (0 <= o.test_fraction < 1, f"--test_fraction must be in [0, 1). Received: {o.test_fraction}"),
        (o.holdout_fraction + o.test_fraction < 1, "--holdout_fraction + --test_fraction must be under 1 "
         f"(something must be left to train on). Received: {o.holdout_fraction} + {o.test_fraction}"),
        (o.num_shards is None or o.num_shards >= 1, f"--num_shards must be at least 1. Received: {o.num_shards}"),
        (o.shard_mb >= 1, f"--shard_mb must be at least 1. Received: {o.shard_mb}"),
        (o.batch_size >= 1, f"--batch_size must be at least 1. Received: {o.batch_size}"),
        (o.feature_dim is None or o.feature_dim >= 1, f"--feature_dim must be at least 1. Received: {o.feature_dim}"),
        (o.seed >= 0, f"--seed must be a non-negative integer. Received: {o.seed}"),
        (o.max_pixels is None or o.max_pixels >= 1, f"--max_pixels must be at least 1. Received: {o.max_pixels}"),
        (o.thumbnail_size >= 1, f"--thumbnail_size must be at least 1. Received: {o.thumbnail_size}"),
        (o.embedding_image_size >= 75,
         f"--embedding_image_size must be at least 75 (InceptionV3's minimum). Received: {o.embedding_image_size}"),
        (o.image_batch_size >= 1, f"--image_batch_size must be at least 1. Received: {o.image_batch_size}"),
        (o.progress_seconds >= 0, f"--progress_seconds must be 0 or more. Received: {o.progress_seconds}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    target_counts = {}
    if o.target_counts:
        try:
            target_counts = json.loads(o.target_counts)
        except json.JSONDecodeError as e:
            raise ValueError(f"--target_counts is not valid JSON ({e}). Received: {o.target_counts!r}") from None
        if not isinstance(target_counts, dict):
            raise ValueError(f"--target_counts must be a JSON object of class to count. Received: {o.target_counts!r}")
        target_counts = {str(k): v for k, v in target_counts.items()}
    try:
        target = parse_target(o.target)
        planning.check_spec(o.strategy, target, target_counts)
    except planning.SpecError as e:
        raise ValueError(as_flags(e)) from None
    given = {name: getattr(o, name) for name in WHERE if hasattr(o, name)}
    return BalanceConfig.of(**given | {  # flags as given, except those resolved above
        "input": input_path,
        "output": output.rstrip("/"),
        "input_format": fmt,
        "feature_column": feature_column,
        "feature_columns": cols,
        "target": target,
        "target_counts": target_counts,
        "cluster_on": cluster_on,
        "processes": resolve_processes(o),
    })


LOCAL_RUNNERS = ("directrunner", "fnapirunner", "direct", "switchingdirectrunner", "bundlebaseddirectrunner")


def runs_here(o: PipelineOptions) -> bool:
    """Whether every bundle runs in this process: the local runner, in_memory or multi_threading,
    with no SDK environment of its own (--environment_type DOCKER, PROCESS, EXTERNAL)."""
    runner = o.view_as(StandardOptions).runner
    environment = str(o.view_as(PortableOptions).environment_type or "").upper()
    return ((runner is None or str(runner).lower() in LOCAL_RUNNERS)
            and o.view_as(DirectOptions).direct_running_mode != "multi_processing"
            and environment in ("", "LOOPBACK", "BEAM:ENV:EMBEDDED_PYTHON:V1"))


def resolve_processes(o: PipelineOptions) -> int:
    """--processes resolved to what the job will use: auto is this machine's cores (at most 4)
    where every bundle runs in this process (`runs_here`) and fork is safe, else 0; a number
    is used where every bundle runs here, and is 0 elsewhere (nothing would use the pools:
    the manifest records what ran, not what was asked)."""
    value = str(o.processes).strip().lower()
    if value == "auto":
        return local_cores() if runs_here(o) and can_fork() else 0
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise ValueError(f"--processes must be auto or a whole number, 0 or more. Received: {o.processes!r}")
    if n and not can_fork():
        raise ValueError(f"--processes {n} forks, which is safe on Linux only: pass 0 here.")
    return n if runs_here(o) else 0
