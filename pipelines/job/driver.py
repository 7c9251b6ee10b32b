"""What both jobs (pipelines.balance, pipelines.histogram) do around their graph.

    flags -> checked configuration (Job) -> graph -> run -> the JSON document written -> summary

`configure` parses the flags (Beam's pass through; anything else is an error), builds
the demo corpus when there is no --input, resolves the input, checks every value and
the output folder before anything is read or written. `execute` builds a job's graph
and runs it. `main` is a command line: progress logging on, and the errors a user can
fix as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import atexit
import glob
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, TestOptions

from pipelines import parallel
from pipelines.config import BalanceConfig
from pipelines.inputs import image_reading
from pipelines.inputs.reading import NS
from pipelines.job import beam_memos
from pipelines.job.flags import BalanceOptions, check_flags, runs_here, to_config
from pipelines.outputs import output_dir, report
from pipelines.outputs.report import short_label
from transforms import columnar_readers, image_folders, remote_files, sources, storage
from transforms.sources import resolve_input

log = logging.getLogger("pipelines.balance")


# Ctrl-C: what to say and undo while a run holds its output (innermost last). Beam runs
# DoFns on the main thread and wraps what they raise, so a KeyboardInterrupt would surface
# as a long traceback of some step, or be swallowed; the handler ends the process instead.
_ON_INTERRUPT: list[tuple[str | None, Callable | None]] = []


@contextmanager
def on_interrupt(message: str | None = None, cleanup: Callable | None = None):
    """While inside: Ctrl-C runs `cleanup`, prints `message` (the innermost one given) and
    exits with status 130."""
    _ON_INTERRUPT.append((message, cleanup))
    try:
        yield
    finally:
        _ON_INTERRUPT.remove((message, cleanup))


def interrupted_message(out: str, written: str) -> str:
    return f"interrupted: {out} is left incomplete (no {written}); re-run the same command to start again"


def _interrupted(signum, frame) -> None:
    """Ctrl-C: the registered cleanups (on a thread, at most 15 s: they may reach an object
    store), one line, exit 130. A second Ctrl-C ends the process at once."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    message = next((said for said, _ in reversed(list(_ON_INTERRUPT)) if said), "interrupted")
    cleanups = [c for _, c in reversed(list(_ON_INTERRUPT)) if c]

    def clean():
        for cleanup in cleanups:
            try:
                cleanup()
            except Exception:  # noqa: BLE001 - the exit must happen; the next run cleans up
                pass

    worker = threading.Thread(target=clean, name="interrupted-cleanup", daemon=True)
    worker.start()
    worker.join(15)
    os.write(2, (message + "\n").encode())
    os._exit(130)  # the job processes end with this process (parallel: they watch their parent)


@dataclass
class Job:
    """What both jobs start from: Beam options, the checked configuration, the vector length."""

    options: PipelineOptions
    cfg: BalanceConfig
    dim: int | None  # None: the corpus's most common vector length, found by the job
    dry_run: bool
    warnings: list[str]  # found before the run; logged at once, repeated in the summary


def _demo_input(known, bo: BalanceOptions) -> str:
    from pipelines.inputs import demo

    if known.demo == "images":
        input_path = demo.build_demo_images(os.path.join(known.demo_dir, "images"))
        bo.input_format = "images"
        print(f"demo corpus: {input_path}/ (scikit-learn digits as 80x80 PNGs in one folder per "
              "class, long-tailed, with 2 bad files)")
        return input_path
    input_path = demo.build_demo_corpus(os.path.join(known.demo_dir, "corpus"))
    print(f"demo corpus: {input_path} (scikit-learn digits, long-tailed, with 3 bad rows)")
    return input_path


def configure(argv: list[str] | None, ap: argparse.ArgumentParser, demo_output: str) -> Job:
    """Flags -> Job: builds the demo corpus without --input, resolves the input, checks every value.

    `ap` (the job's own parser) answers --help and checks types and choices; the values
    come from BalanceOptions, so every Beam flag passes through. Without --output, the
    demo writes to DEMO_DIR/`demo_output`.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    known, _ = ap.parse_known_args(argv)
    check_flags(argv, ap)
    options = PipelineOptions(argv)
    remote_files.configure(options)  # before the first FileSystems call: endpoints, credentials of the job's flags
    bo = options.view_as(BalanceOptions)
    if known.input is None:
        output = known.output or os.path.join(known.demo_dir, demo_output)
        input_path = _demo_input(known, bo)
    else:
        if not known.output:
            raise ValueError(f"--output is required with --input (Received: --input {known.input!r}): "
                             "name the folder to write to, e.g. --output out/.")
        input_path, output = known.input, known.output
    pattern, fmt = resolve_input(input_path, bo.input_format)
    bo.input_format = fmt
    cfg = to_config(bo, pattern, output)
    dry_run = str(options.view_as(TestOptions).dry_run).lower() == "true"
    output_dir.check_no_overlap(cfg.read.input, fmt == "images", cfg.output.folder)
    if not dry_run:  # a dry run translates the graph and never looks at OUT
        if not remote_files.bucket_exists(cfg.output.folder):
            raise ValueError(f"--output {cfg.output.folder!r}: its bucket does not exist, or these credentials cannot "
                             "see it. Create the bucket first, or check the project and credentials.")
        output_dir.check_ours(cfg.output.folder, bo.overwrite)
    if cfg.images.cluster_on == "inception_v3":
        image_reading.check_embedding_weights(cfg.images.embedding_weights)
    warnings = []
    asked = str(bo.processes).strip().lower()
    if asked not in ("auto", "0") and not cfg.processes:
        warnings.append(f"--processes {asked} is for runs whose every bundle runs in this process (the local "
                        "runners); here each worker runs the passes itself, so it is not used (recorded as 0)")
    if fmt == "images":
        for label in image_folders.empty_class_folders(cfg.read.input):
            warnings.append(f"class folder {short_label(label)!r} of {cfg.read.input!r} is empty: Keras would list it as "
                            "a class with no images; the job has no record of it, so it is not a class of the output")
    for w in warnings:
        log.warning(w)
    dim = cfg.images.dim if cfg.payload == "image" else cfg.feature_dim or columnar_readers.schema_dim(cfg.read)
    return Job(options, cfg, dim, dry_run, warnings)


def execute(job: Job, build_graph: Callable, staging: str, written: str, test_pipeline=None):
    """Builds the graph with `build_graph(p, cfg, staging, dim, warnings)` and runs it; returns
    (the JSON document `written` in OUT, the Beam result, seconds), or None after a dry run."""
    started = time.time()
    beam_memos.install()
    if runs_here(job.options):  # the pools forked now, before the runner's own threads
        # with the cluster strategy, they import scikit-learn while pass 1 runs; none with 0
        parallel.start(job.cfg.processes, fits=job.cfg.plan.clusters > 1)
        # The end-of-run figures need matplotlib: imported now, beside the passes (after the
        # forks: no fork may happen while a thread holds an import lock).
        threading.Thread(target=report.preload, name="import-matplotlib", daemon=True).start()
    p = test_pipeline or beam.Pipeline(options=job.options)
    scratch = scratch_folder(job, staging)
    remove_scratch = (lambda: storage.delete_folder(scratch)) if scratch != staging else None
    try:
        with on_interrupt(interrupted_message(job.cfg.output.folder, written), remove_scratch):
            build_graph(p, job.cfg, staging, job.dim, job.warnings, scratch=scratch)
            result = p.run()
            result.wait_until_finish()
    finally:
        if remove_scratch:
            remove_scratch()
    if job.dry_run:
        print(f"dry run: the graph translated and the job was prepared ({type(result).__name__}); nothing ran.")
        return None
    with FileSystems.open(FileSystems.join(job.cfg.output.folder, written)) as f:
        return json.load(f), result, time.time() - started


def scratch_folder(job: Job, staging: str) -> str:
    """Where the record cache and the fragments go: beside the run's lists in OUT/.staging/RUN/,
    except when OUT is on an object store and every bundle runs in this process: then on
    local disk (a temporary folder, removed after the run), so that about 4.7x the corpus
    is not uploaded and read back, object by object."""
    if storage.is_remote(staging) and runs_here(job.options) and not job.dry_run:
        for old in glob.glob(os.path.join(tempfile.gettempdir(), "balance-scratch-*-*")):
            pid = os.path.basename(old).split("-")[2]
            if pid.isdigit() and not output_dir.pid_alive(int(pid)):  # a killed run's (kill -9, OOM)
                storage.delete_folder(old)
        return tempfile.mkdtemp(prefix=f"balance-scratch-{os.getpid()}-")
    return staging


def counters(result) -> dict[str, int]:
    """The job's Beam counters (records read, rejected, ...), summed over steps; {} where a runner has none."""
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(NS))["counters"]
    except Exception:  # noqa: BLE001 - some runners report no metrics
        return {}
    out: dict[str, int] = {}
    for c in found:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    return out


def main(run: Callable) -> None:
    """The command line of a job's `run`: progress logging on, and expected errors as one line
    and exit status 2."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", force=True)
    logging.getLogger("pipelines").setLevel(logging.INFO)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _interrupted)  # Ctrl-C: one line, exit 130
    try:
        run()
    except (ValueError, sources.UnreadableFile) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    # Done: every file is written and closed. The interpreter's teardown of Beam's modules
    # would take another ~0.5 s and change nothing, so the job ends here, once its process
    # pools are shut down, the exit handlers have run (Beam's stop a job server it started;
    # logging's flush) and its streams are flushed.
    parallel.shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
