"""A job killed part-way leaves no manifest; running it again gives the clean run's output."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import read_manifest, run_job, train_records, write_parquet_corpus

BIG = {"a": 120_000, "b": 40_000, "c": 9_000, "d": 2_000}


def listing(out):
    return sorted(os.path.relpath(p, out) for p in glob.glob(os.path.join(out, "**"), recursive=True)
                  if os.path.isfile(p) and not p.endswith("report.png"))


KILL_WHEN = {  # the moments a kill is most likely to leave something behind
    "writing fragments": lambda out: glob.glob(str(out / ".staging" / "*" / "*.arrow")),
    "writing shards": lambda out: glob.glob(str(out / "parquet" / "train" / "*" / "*.parquet*")),
}


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """The corpus and its clean run, the same for every kill moment."""
    root = tmp_path_factory.mktemp("crash")
    corpus = write_parquet_corpus(str(root / "corpus"), files=3, row_group=20_000, sizes=BIG)
    clean = run_job(corpus, root / "clean", "--num_shards", "2", "--output_format", "parquet")
    return corpus, root / "clean", clean


@pytest.mark.parametrize("when", KILL_WHEN)
def test_kill_minus_9_then_rerun_equals_a_clean_run(big, tmp_path, when):
    corpus, clean_out, clean = big
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipelines.balance", "--input", corpus, "--output", str(out),
           "--runner=FnApiRunner", "--num_shards", "2", "--output_format", "parquet"]
    job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and job.poll() is None:
        if KILL_WHEN[when](out):
            break
        time.sleep(0.01)
    assert job.poll() is None, "the job ended before it could be killed"
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert not (out / "manifest.json").exists()  # readers can tell the output is incomplete
    assert glob.glob(str(out / ".staging" / "*"))  # the killed run's leftovers are there

    again = run_job(corpus, out, "--num_shards", "2", "--output_format", "parquet")
    assert train_records(out) == train_records(clean_out)
    assert listing(out) == listing(clean_out)  # no stale or temporary files
    assert not (out / ".staging").exists()  # the killed run's fragments are gone too
    assert again["totals"] == clean["totals"] == read_manifest(out)["totals"]
