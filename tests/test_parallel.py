"""pipelines.parallel: the job's processes, the decode threads, the parallel map, --processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from pipelines import parallel
from pipelines.config import BalanceConfig
from pipelines.job import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pid_after(seconds):
    time.sleep(seconds)
    return os.getpid()


def _pids(pool, n):
    """The pids of a pool's n processes (each takes one of n slow calls)."""
    return set(pool.map(_pid_after, [0.3] * n))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_the_jobs_processes_run_the_work_and_a_later_job_uses_them_again():
    parallel.start(2)
    pool, width = parallel.processes()
    pids = _pids(pool, 2)
    assert width == 2 and os.getpid() not in pids and len(pids) == 2
    parallel.start(2)
    assert parallel.processes()[0] is pool  # same number, all working: used again
    parallel.start(3)
    assert parallel.processes()[0] is not pool and parallel.processes()[1] == 3
    parallel.shutdown()
    assert parallel.processes() == (None, 1)


def test_a_pool_whose_process_died_while_idle_is_replaced_by_the_next_job():
    parallel.start(2)
    pool, _ = parallel.processes()
    os.kill(next(iter(_pids(pool, 2))), signal.SIGKILL)
    time.sleep(0.5)
    parallel.start(2)
    fresh, _ = parallel.processes()
    assert fresh is not pool and list(fresh.map(abs, [-1, -2])) == [1, 2]
    parallel.shutdown()


def test_processes_exit_when_their_parent_is_killed(tmp_path):
    code = ("import os, signal; from pipelines import parallel; parallel.start(2); "
            "kids = [c for t in os.listdir('/proc/self/task') for c in open(f'/proc/self/task/{t}/children').read().split()]; "
            "print(*kids, flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    # stdout to a file, not a pipe: orphans holding the pipe would keep a reader waiting
    with open(tmp_path / "pids", "w") as out:
        rc = subprocess.run([sys.executable, "-c", code], stdout=out, stderr=subprocess.DEVNULL, timeout=120,
                            cwd=ROOT).returncode
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


def _inside(_):
    from threadpoolctl import threadpool_info

    blas = {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    return parallel.decode_threads() is None, parallel.processes()[0] is None, blas


def test_a_job_process_decodes_on_one_thread_with_one_blas_thread_and_no_pools_of_its_own():
    parallel.start(2)
    inside = list(parallel.processes()[0].map(_inside, range(2)))
    assert all(no_decode and no_pool and blas == {1} for no_decode, no_pool, blas in inside)
    assert parallel.decode_threads() is not None  # the worker's own
    parallel.shutdown()


def test_shutdown_ends_the_processes_at_once():
    parallel.start(2)
    pids = _pids(parallel.processes()[0], 2)
    parallel.shutdown()
    assert not any(_alive(p) for p in pids)  # gone now, not after their watch notices a parent gone


def test_a_forked_child_does_not_use_the_parents_pools():
    parallel.decode_threads()
    parallel.start(2)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's pools are forgotten
        os.write(w, b"%d" % (parallel._PROCESSES is None and parallel._THREADS is None))
        os._exit(0)
    os.waitpid(pid, 0)
    parallel.shutdown()
    assert os.read(r, 1) == b"1"


def test_threads_asking_for_the_decode_threads_at_once_get_one_pool(monkeypatch):
    class SlowToMake(ThreadPoolExecutor):  # widens the window in which two callers could both make one
        def __init__(self, *args, **kwargs):
            time.sleep(0.05)
            super().__init__(*args, **kwargs)

    parallel.shutdown()
    monkeypatch.setattr(parallel, "ThreadPoolExecutor", SlowToMake)
    with ThreadPoolExecutor(8) as callers:
        pools = list(callers.map(lambda _: parallel.decode_threads(), range(64)))
    assert len({id(p) for p in pools}) == 1
    parallel.shutdown()


class Overlap:
    """Records how many calls run at once; each call waits a little so that they can."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = self.most = 0

    def __call__(self, x, offset):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.05)
        with self.lock:
            self.now -= 1
        return x + offset


def test_in_flight_keeps_the_order_and_at_most_width_plus_one_calls_at_once():
    fn = Overlap()
    with ThreadPoolExecutor(8) as pool:
        calls = parallel.InFlight(fn, pool, 3)
        got = [y for x in range(12) for y in calls.add(x, (100,))] + list(calls.drain())
    assert got == [x + 100 for x in range(12)]
    assert fn.most == 4  # the calls overlapped, never more than the width and one waiting


def test_in_flight_runs_here_what_a_dead_pool_or_the_here_rule_leaves():
    class DeadPool:
        def submit(self, *args):
            raise BrokenProcessPool("a process died")

    calls = parallel.InFlight(lambda x: x * 2, DeadPool(), 2)
    assert [y for x in range(5) for y in calls.add(x, ())] + list(calls.drain()) == [0, 2, 4, 6, 8]
    assert calls.pool is None  # no new pool is forked from the running job

    class NoPool:
        def submit(self, *args):
            raise AssertionError("sent to the pool")

    calls = parallel.InFlight(lambda x: -x, NoPool(), 2, here=lambda x: True)
    assert [y for x in range(3) for y in calls.add(x, ())] + list(calls.drain()) == [0, -1, -2]


def test_parallel_map_gives_every_element_once_with_side_inputs_and_errors_fail_the_job():
    parallel.start(2)
    try:
        with beam.Pipeline(runner="FnApiRunner") as p:
            offset = p | "Offset" >> beam.Create([1000])
            out = (p | "Elements" >> beam.Create(list(range(40)))
                   | beam.ParDo(parallel.ParallelMap(_add), beam.pvalue.AsSingleton(offset)))
            assert_that(out, equal_to([x + 1000 for x in range(40)]))
        with pytest.raises(Exception, match="element 7 is bad"):
            with beam.Pipeline(runner="FnApiRunner") as p:
                _ = p | beam.Create(list(range(20))) | beam.ParDo(parallel.ParallelMap(_boom))
    finally:
        parallel.shutdown()


def _add(x, offset):
    return x + offset


def _boom(x):
    if x == 7:
        raise ValueError("element 7 is bad")
    return x


def resolved(*argv):
    return flags.resolve_processes(flags.BalanceOptions(list(argv)))


def test_processes_auto_is_the_cores_on_the_local_runner_only():
    cores_here = parallel.local_cores()
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


def test_pass_1_reads_on_the_processes_except_tfrecord_input():
    vectors = BalanceConfig.of(input="in", output="out", input_format="parquet", processes=3)
    assert vectors.reads_in_processes
    assert not BalanceConfig.of(input="in", output="out", input_format="tfrecord").reads_in_processes  # TensorFlow parses it: no fork


def test_the_command_line_ends_with_its_summary(tmp_path):
    """The job ends with os._exit once its output is written (after parallel.shutdown and
    the exit handlers): the summary and the log are still printed in full, and nothing of its
    process group is left."""
    from helpers import write_parquet_corpus

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
    assert "pass 4/4 (resample): done" in err and "Done in" in out and out.rstrip().endswith("cluster sizes per class")
    with pytest.raises(ProcessLookupError):  # nothing of its process group is left
        os.killpg(job.pid, 0)
