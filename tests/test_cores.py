"""transforms.cores: the decode process pool, map_ahead's order and errors, --decode_processes."""

from __future__ import annotations

import os

import pytest

from pipelines import options
from transforms import cores


def _pid_and_square(x):
    return os.getpid(), x * x


def _items(n, fail_at=None):
    for i in range(n):
        if i == fail_at:
            raise OSError(f"damaged at {i}")
        yield f"t{i}", i


def test_map_ahead_keeps_order_and_runs_on_the_processes():
    pool = cores.process_pool(2)
    got = list(cores.map_ahead(pool, _pid_and_square, _items(20), depth=3))
    assert [tag for tag, _ in got] == [f"t{i}" for i in range(20)]
    assert [r[1] for _, r in got] == [i * i for i in range(20)]
    pids = {r[0] for _, r in got}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # the pool's own processes did the work
    assert cores.process_pool(2) is pool  # one pool per process and width


@pytest.mark.parametrize("pool", [None, "processes"])
def test_map_ahead_yields_what_came_before_an_error_then_raises_it(pool):
    pool = cores.process_pool(2) if pool else None
    seen = []
    with pytest.raises(OSError, match="damaged at 5"):
        for tag, result in cores.map_ahead(pool, _pid_and_square, _items(9, fail_at=5), depth=3):
            seen.append((tag, result[1]))
    assert seen == [(f"t{i}", i * i) for i in range(5)]


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
    return options.decode_processes(options.BalanceOptions(list(argv)))


def test_decode_processes_auto_is_the_cores_on_the_local_runner_only():
    cores_here = cores.worker_threads()
    assert resolved() == resolved("--runner=FnApiRunner") == resolved("--runner=DirectRunner") == cores_here
    assert resolved("--direct_running_mode=multi_threading", "--direct_num_workers=2") == cores_here
    assert resolved("--direct_running_mode=multi_processing", "--direct_num_workers=2") == 0
    assert resolved("--runner=DataflowRunner") == resolved("--runner=FlinkRunner") == 0
    assert resolved("--decode_processes", "3", "--runner=DataflowRunner") == 3
    assert resolved("--decode_processes", "0") == 0
    for bad in ("-1", "two", "1.5"):
        with pytest.raises(ValueError, match=f"--decode_processes must be auto or a whole number.*{bad}"):
            resolved("--decode_processes", bad)
