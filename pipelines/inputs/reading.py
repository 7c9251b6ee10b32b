"""Reading the corpus in Beam: files -> units -> valid and rejected batches, with progress.

Every read stage (image files; vector files and the record cache through
pipelines/parallel.py) has the same bookkeeping, written once here in `ReadStage`:
- the outputs "rejected": rejected batches with reasons, and "counted": the records
  each batch (or unit, or file) held (a pass's total is logged when it is done, and the
  last pass's is checked against the files);
- with `count` (the job's last pass, so each record is counted once) the Beam counters;
- a progress line per worker every `progress_seconds`;
- a file that cannot be read fails the job naming it, or, with
  --reject_unreadable_files, becomes one rejected entry (the records read before the
  damage are kept; see `unit_batches`).
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio
from apache_beam.metrics import Metrics

from pipelines import parallel
from pipelines.errors import JobError
from pipelines.parallel import windowed
from transforms import records, sources
from transforms.sources import ReadSpec

NS = "balance"  # the Beam counters' namespace
log = logging.getLogger("pipelines.balance")


class Progress:
    """Records one read stage has read on this worker, logged every `seconds` (0: every batch).

    Plain logging from inside the read stage: it works the same on every runner (the
    local ones print it, Dataflow and Flink collect it with the worker logs), and costs
    one clock read per batch. A global running total would need the runner's metrics
    while the job runs, which the local runners only report at the end.
    """

    def __init__(self, name: str, seconds: float):
        self.name, self.seconds = name, seconds
        self.records = self.logged = 0
        self.last = time.monotonic()

    def add(self, n: int) -> None:
        self.records += n
        now = time.monotonic()
        if now - self.last >= self.seconds:
            rate = (self.records - self.logged) / max(now - self.last, 1e-9)
            log.info("%s: %s records read so far on this worker (%s/s)", self.name, f"{self.records:,}",
                     f"{rate:,.0f}")
            self.last, self.logged = now, self.records


class ReadStage(beam.DoFn):
    """The bookkeeping every read stage shares; subclasses read in `process` and call `emit`."""

    def __init__(self, name: str, progress_seconds: float, count: bool):
        self.name, self.progress_seconds, self.count = name, progress_seconds, count
        self.read = Metrics.counter(NS, "records_read")
        self.rejected = Metrics.counter(NS, "records_rejected")

    def setup(self):
        self.progress = Progress(self.name, self.progress_seconds)

    def emit(self, n: int, good: dict | None, bad: dict | None):
        """The outputs of one batch of `n` records read."""
        yield from self.account(n, len(bad["row"]) if bad is not None else 0)
        if bad is not None:
            yield beam.pvalue.TaggedOutput("rejected", bad)
        if good is not None:
            yield good

    def account(self, n: int, rejected: int):
        """The bookkeeping of `n` records read, `rejected` of them rejected: progress, the
        "counted" output, and (the last pass) the Beam counters."""
        self.progress.add(n)
        yield beam.pvalue.TaggedOutput("counted", n)
        if self.count:
            self.read.inc(n)
            if rejected:
                self.rejected.inc(rejected)

    def emit_unreadable(self, e: sources.UnreadableFile, unit, reject: bool):
        """A file that cannot be read: the job fails naming it, or (`reject`) one rejected entry."""
        bad = unreadable(e, unit[0], reject)
        yield from self.emit(1, None, bad)


def unit_batches(unit, spec: ReadSpec, read):
    """Raw batches of a unit from `read(unit, spec)`. With --reject_unreadable_files, when the
    unit fails part-way the records before the damage are read again one at a time (so what
    is kept does not depend on --batch_size) and the UnreadableFile raised at the end says,
    in `.done`, how many records were read."""
    done = 0
    try:
        for raw in read(unit, spec):
            done += len(raw["row"])
            yield raw
    except sources.UnreadableFile as e:
        if spec.reject_unreadable_files:
            seen = 0
            try:
                for raw in read(unit, spec.one_at_a_time()):
                    seen += len(raw["row"])
                    if seen > done:
                        done = seen
                        yield raw
            except sources.UnreadableFile:
                pass
            e.done = done
        raise


def unreadable(e: Exception, source: str, reject: bool) -> dict:
    """An unreadable file: fails the job naming it, or (`reject`) one rejected entry.

    When records of the unit were read before the damage (`e.done`, see unit_batches),
    they are kept, and the entry stands for the rest of the file.
    """
    done = getattr(e, "done", 0)
    if not reject:
        raise sources.UnreadableFile(
            f"{e}. Fix or remove the file, or pass --reject_unreadable_files to reject it and go on."
        ) from e
    what = f"unreadable after its first {done} records (those were kept)" if done else "unreadable file"
    return records.rejected_file(source, f"{what}: {e}")


class CheckedVectors:
    """A vector corpus's unit read and checked against the vector length, batch by batch:
    (records, valid, rejected), either None when empty (for record_cache.read_into_cache)."""

    def __init__(self, spec: ReadSpec):
        self.spec = spec

    def __call__(self, unit, dim: int):
        for raw in unit_batches(unit, self.spec, sources.read_unit):
            yield (len(raw["row"]), *records.validate(raw, dim))


def units_of_files(pbegin, spec: ReadSpec):
    """Matched files -> units (row groups, whole files), spread over workers."""
    return (
        pbegin
        | "Pattern" >> beam.Create([spec.input])
        | "Match" >> fileio.MatchAll()
        | "Units" >> beam.FlatMap(lambda m, fmt: sources.list_units(m.path, fmt), spec.input_format)
        | "Spread" >> beam.Reshuffle()
    )


class Units(beam.PTransform):
    """The corpus's units of work: `make(pbegin, spec)` (units_of_files, image_stages.image_units)."""

    def __init__(self, make, spec: ReadSpec):
        super().__init__()
        self.make, self.spec = make, spec

    def expand(self, pbegin):
        return self.make(pbegin, self.spec)


def _log_done(total: int, name: str) -> int:
    log.info("%s: done, %s records read", name, f"{total:,}")
    return total


class PassDone(beam.PTransform):
    """Records read per batch -> the pass's total, logged once the pass has read everything."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def expand(self, counted):
        return (
            counted
            | "Total" >> beam.CombineGlobally(sum)
            | "Log" >> beam.Map(_log_done, self.name)
        )


# ---------------------------------------------------------------- the vector length


class _LengthHistogram(beam.DoFn):
    def __init__(self, spec: ReadSpec):
        self.spec = spec

    def process(self, unit):
        try:
            for raw in unit_batches(unit, self.spec, sources.read_unit):
                lengths = raw["lengths"][raw["lengths"] >= 0]
                values, counts = np.unique(lengths, return_counts=True)
                yield dict(zip(values.tolist(), counts.tolist(), strict=True))
        except sources.UnreadableFile as e:
            if not self.spec.reject_unreadable_files:  # fails the job naming the file; else rejected later
                unreadable(e, unit[0], False)


def _sum_dicts(dicts):
    total: dict = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + v
    return total


def _mode(histogram: dict) -> int:
    if not histogram:
        raise JobError("The input has no records with features (it is empty, or no row has the "
                       "feature column): check --input and --feature_column.")
    best = max(histogram.values())
    return min(k for k, v in histogram.items() if v == best)  # ties: the shorter length


class FeatureDimension(beam.PTransform):
    """The most common vector length in the corpus (a global statistic)."""

    def __init__(self, spec: ReadSpec):
        super().__init__()
        self.spec = spec

    def expand(self, pbegin):
        return (
            units_of_files(pbegin, self.spec)
            | "Lengths" >> beam.ParDo(_LengthHistogram(self.spec))
            | "Sum" >> beam.CombineGlobally(_sum_dicts)
            | "Mode" >> beam.Map(_mode)
        )


class Result(NamedTuple):
    """What a read pass's function returns for one element."""

    read: int  # records read (the pass's progress and total)
    rejected: int  # of those, rejected (counted on the job's last pass)
    outputs: list  # elements of the main output, or beam.pvalue.TaggedOutput
    counters: dict  # Beam counter name -> increment


class PassWork(ReadStage):
    """A read pass: `fn(element, *side) -> Result` for each element, on the job's processes
    (only the small results travel back: cache and fragment paths, per-class partials,
    samples, histograms, counts) or, where there are none (or `use_processes` is false:
    TFRecord input, which TensorFlow parses), here."""

    def __init__(self, name: str, progress_seconds: float, count: bool, fn, use_processes: bool = True):
        super().__init__(name, progress_seconds, count)
        self.fn, self.use_processes = fn, use_processes

    def setup(self):
        super().setup()
        self.calls = parallel.InFlight(self.fn, *(parallel.processes() if self.use_processes else (None, 1)))

    def process(self, element, *side):
        for result in self.calls.add(element, side):
            yield from self._outputs(result)

    def finish_bundle(self):
        for result in self.calls.drain():
            for out in self._outputs(result):
                if isinstance(out, beam.pvalue.TaggedOutput):
                    yield beam.pvalue.TaggedOutput(out.tag, windowed(out.value))
                else:
                    yield windowed(out)

    def _outputs(self, result: Result):
        yield from self.account(result.read, result.rejected)
        for name, value in result.counters.items():
            Metrics.counter(NS, name).inc(value)
        yield from result.outputs
