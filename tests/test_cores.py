"""transforms.cores: the process pools (the pass processes, the k-means fits), --processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

import pytest

from pipelines import options
from transforms import cores


def _pid_and_square(x):
    return os.getpid(), x * x


def _noop():
    pass


def _die(x):
    os._exit(1)


def test_one_pool_per_width_and_initializer_whose_work_runs_on_its_processes():
    pool = cores.process_pool(2)
    pids = {pid for pid, _ in pool.map(_pid_and_square, range(20))}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # the pool's own processes did the work
    assert cores.process_pool(2) is pool  # one pool per process, width and initializer
    assert cores.process_pool(2, _noop) is not pool


def test_a_pool_whose_worker_died_is_dropped_and_the_next_one_works():
    pool = cores.process_pool(2)
    with pytest.raises(BrokenProcessPool):
        list(pool.map(_die, range(4)))
    assert cores.process_pool(2, create=False) is None  # what the job's stages ask: no fork once it runs
    fresh = cores.process_pool(2)
    assert fresh is not pool and list(fresh.map(abs, [0, -1, 2])) == [0, 1, 2]
    assert cores.process_pool(2, create=False) is fresh
    assert cores.process_pool(5, _noop, create=False) is None  # never made


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_workers_exit_when_their_parent_is_killed(tmp_path):
    code = ("import os, signal; from transforms import cores; p = cores.process_pool(2); "
            "print(*p._processes, flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    # stdout to a file, not a pipe: orphans holding the pipe would keep a reader waiting
    with open(tmp_path / "pids", "w") as out:
        rc = subprocess.run([sys.executable, "-c", code], stdout=out, stderr=subprocess.DEVNULL, timeout=60,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).returncode
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    try:
        assert rc == -signal.SIGKILL and len(pids) == 2
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids)
    finally:
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def _decode_threads(_):
    from transforms import images

    return images.DECODE_THREADS


def test_pass_processes_decode_on_one_thread_each():
    from pipelines import pooled

    assert set(pooled.pass_pool(2).map(_decode_threads, range(4))) == {1}


def test_an_idle_pool_whose_worker_died_is_replaced():
    pool = cores.process_pool(2)
    victim = next(iter(pool._processes))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while cores._healthy(pool) and time.monotonic() < deadline:  # until the death can be seen
        time.sleep(0.05)
    fresh = cores.process_pool(2)
    assert fresh is not pool and list(fresh.map(abs, [-1, -2])) == [1, 2]


def test_a_forked_child_does_not_use_the_parents_pools():
    cores.shared_pool()
    cores.process_pool(2)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its pools are forgotten, so it would make its own
        os.write(w, b"%d" % (cores._POOL is None and not cores._PROCESSES))
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1"


def resolved(*argv):
    return options.resolve_processes(options.BalanceOptions(list(argv)))


def test_processes_auto_is_the_cores_on_the_local_runner_only():
    cores_here = cores.worker_threads()
    assert resolved() == resolved("--runner=FnApiRunner") == resolved("--runner=DirectRunner") == cores_here
    assert resolved("--direct_running_mode=multi_threading", "--direct_num_workers=2") == cores_here
    assert resolved("--direct_running_mode=multi_processing", "--direct_num_workers=2") == 0
    assert resolved("--runner=DataflowRunner") == resolved("--runner=FlinkRunner") == 0
    assert resolved("--environment_type=DOCKER") == resolved("--environment_type=PROCESS") == 0
    assert resolved("--processes", "3", "--runner=DataflowRunner") == 0  # nothing would use them there
    assert resolved("--processes", "3", "--runner=FnApiRunner") == 3
    assert resolved("--processes", "0") == 0
    for bad in ("-1", "two", "1.5"):
        with pytest.raises(ValueError, match=f"--processes must be auto or a whole number.*{bad}"):
            resolved("--processes", bad)


def test_which_work_goes_to_the_processes():
    images = options.BalanceConfig(input="in", output="out", input_format="images", cluster_on="thumbnail", processes=3)
    random = replace(images, strategy="oversample")
    vectors = options.BalanceConfig(input="in", output="out", input_format="parquet", processes=3)
    assert (images.fit_processes, random.fit_processes, vectors.fit_processes) == (3, 0, 3)  # no k-means, no fits
    for cfg in (images, replace(images, cluster_on="inception_v3"), random, vectors):
        assert cfg.pass_processes == cfg.read_processes == 3  # the read passes and the merges: every job
    assert replace(vectors, input_format="tfrecord").read_processes == 0  # TensorFlow parses it: no fork


def test_shutdown_pools_ends_the_workers_at_once():
    cores.shared_pool()
    pids = [p for pool in (cores.process_pool(2), cores.process_pool(3)) for p in pool._processes]
    cores.shutdown_pools()
    assert not any(_alive(p) for p in pids)  # gone now, not after their watch notices a parent gone
    assert cores._POOL is None and not cores._PROCESSES
    assert list(cores.process_pool(2).map(abs, [-3])) == [3]  # a later call makes new pools


def test_the_command_line_ends_with_its_summary(tmp_path):
    """The job ends with os._exit once its output is written (after cores.shutdown_pools and
    the exit handlers): the summary and the log are still printed in full, and nothing of its
    process group is left."""
    from conftest import write_parquet_corpus

    corpus = write_parquet_corpus(str(tmp_path / "corpus"), files=1)
    job = subprocess.Popen([sys.executable, "-m", "pipelines.balance", "--input", corpus, "--output",
                            str(tmp_path / "out"), "--runner=FnApiRunner", "--processes", "2"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = job.communicate(timeout=300)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 0, err[-3000:]
    assert "clusters fitted" in err and "Done in" in out and out.rstrip().endswith("cluster sizes per class")
    with pytest.raises(ProcessLookupError):  # nothing of its process group is left
        os.killpg(job.pid, 0)


def test_threads_asking_for_the_shared_pool_at_once_get_one_pool(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    class SlowToMake(ThreadPoolExecutor):  # widens the window in which two callers could both make one
        def __init__(self, *args, **kwargs):
            time.sleep(0.05)
            super().__init__(*args, **kwargs)

    cores.shutdown_pools()
    monkeypatch.setattr(cores, "ThreadPoolExecutor", SlowToMake)
    with ThreadPoolExecutor(8) as callers:
        pools = list(callers.map(lambda _: cores.shared_pool(), range(64)))
    assert len({id(p) for p in pools}) == 1
    cores.shutdown_pools()
