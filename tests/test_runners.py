"""The job through Beam's portable protocol (what Flink and Spark job servers speak)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from conftest import run_job, train_records, write_parquet_corpus


@pytest.fixture(scope="module")
def corpus_and_reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("runners")
    corpus = write_parquet_corpus(str(root / "corpus"))
    run_job(corpus, root / "direct", "--num_shards", "2")
    return corpus, train_records(root / "direct"), root


def val_ids(out):
    import glob

    import pyarrow.parquet as pq

    return sorted(i for f in glob.glob(os.path.join(out, "parquet", "val", "*.parquet")) for i in pq.read_table(f).column("id").to_pylist())


def test_portable_runner_loopback_equals_direct(corpus_and_reference):
    corpus, want, root = corpus_and_reference
    run_job(corpus, root / "loopback", "--num_shards", "2", "--job_endpoint=embed",
            "--environment_type=LOOPBACK", runner="PortableRunner")
    assert train_records(root / "loopback") == want
    assert val_ids(root / "loopback") == val_ids(root / "direct")


def free_port() -> int:
    s = socket.socket()
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_external_worker_pool_equals_direct(corpus_and_reference):
    """Workers in other processes, started by a worker pool, as on a Flink TaskManager."""
    corpus, want, root = corpus_and_reference
    port = free_port()
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    pool = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                             f"--service_port={port}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):  # wait until the pool listens
            with socket.socket() as s:
                if s.connect_ex(("localhost", port)) == 0:
                    break
            time.sleep(0.2)
        run_job(corpus, root / "external", "--num_shards", "2", "--job_endpoint=embed",
                "--environment_type=EXTERNAL", f"--environment_config=localhost:{port}", runner="PortableRunner")
    finally:
        pool.terminate()
        pool.wait(timeout=30)
    assert train_records(root / "external") == want
    assert val_ids(root / "external") == val_ids(root / "direct")


def test_dataflow_dry_run_translates_and_stages_offline(corpus_and_reference, tmp_path):
    pytest.importorskip("google.cloud.storage")  # the optional apache-beam[gcp] extra
    corpus, _, _ = corpus_and_reference
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run(
        [sys.executable, "-m", "pipelines.balance", "--input", corpus, "--output", "gs://balance-corpus-ci/out",
         "--runner=DataflowRunner", "--project=balance-corpus-ci", "--region=us-central1",
         "--temp_location=gs://balance-corpus-ci/tmp", "--dry_run=True", "--no_auth",
         "--sdk_location=container", "--setup_file=./setup.py"],
        cwd=root, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "dry run: the graph translated" in run.stdout
    # the stager built the package workers install: it tries `python -m build` (not installed
    # here), then runs setup.py sdist, whose setuptools warnings (if any) land on stderr too
    assert "No module named build" in run.stderr or "setuptools" in run.stderr
