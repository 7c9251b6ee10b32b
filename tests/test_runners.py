"""The job through Beam's portable protocol (what Flink and Spark job servers speak)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from helpers import run_job, train_records, write_parquet_corpus
from object_stores import free_port


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
        m = run_job(corpus, root / "external", "--num_shards", "2", "--job_endpoint=embed", "--processes", "2",
                    "--environment_type=EXTERNAL", f"--environment_config=localhost:{port}", runner="PortableRunner")
    finally:
        pool.terminate()
        pool.wait(timeout=30)
    assert train_records(root / "external") == want
    assert val_ids(root / "external") == val_ids(root / "direct")
    # the workers ran the passes themselves: the manifest says no pools were used, and why
    assert m["options"]["processes"] == 0
    assert any("--processes 2" in w for w in m["run"]["warnings"])


def test_dataflow_dry_run_stages_from_a_plain_venv(corpus_and_reference, tmp_path):
    """A Dataflow submission from a user's plain environment: a venv as `python -m venv` makes
    it (its bundled setuptools, no upgrade), the dependencies beside it. Beam's stager builds
    the project's sdist with that venv's Python (`python -m build --no-isolation`, else
    `setup.py sdist`), translates the graph and stages, offline (--dry_run)."""
    pytest.importorskip("google.cloud.storage")  # the optional apache-beam[gcp] extra
    import glob
    import sysconfig

    corpus, _, _ = corpus_and_reference
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)  # ensurepip: its own setuptools
    site = glob.glob(str(env_dir / "lib" / "python3*" / "site-packages"))[0]
    bundled = [n for n in os.listdir(site) if n.startswith("setuptools-")]
    with open(os.path.join(site, "dependencies.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")  # after the venv's own packages: its setuptools wins
    python = str(env_dir / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    used = subprocess.run([python, "-c", "import setuptools; print(setuptools.__version__, setuptools.__file__)"],
                          env=env, capture_output=True, text=True, check=True).stdout
    assert used.split()[1].startswith(site), used  # the venv's bundled setuptools, not the test venv's
    run = subprocess.run(
        [python, "-m", "pipelines.balance", "--input", corpus, "--output", "gs://balance-corpus-ci/out",
         "--runner=DataflowRunner", "--project=balance-corpus-ci", "--region=us-central1",
         "--temp_location=gs://balance-corpus-ci/tmp", "--dry_run=True", "--no_auth",
         "--sdk_location=container", "--setup_file=./setup.py"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"setuptools {used} ({bundled})\n" + run.stderr[-3000:]
    assert "dry run: the graph translated" in run.stdout
    # the stager built the package workers install: `python -m build` is not installed here,
    # so it ran `setup.py sdist` with the venv's setuptools
    assert "No module named build" in run.stderr or "setuptools" in run.stderr
