"""Fixtures and pytest hooks; the builders the tests share are in tests/helpers.py."""

from __future__ import annotations

import os

# One OpenMP thread per test process, set before scikit-learn loads its libgomp. make test
# runs two xdist workers on two cores; a second OpenMP thread per worker oversubscribes
# them, and a k-means fit of a tiny class then spins for ~0.6 s instead of ~6 ms (the
# 1,000-class test does 1,000 such fits). Results do not depend on the thread count; the
# jobs the tests start as subprocesses inherit the setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
from helpers import corpus_blobs, run_job, write_folder, write_parquet_corpus  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "heavy: a test of a minute or more that shares no module fixture; run first (see below)")


@pytest.hookimpl(trylast=True)  # after -m has deselected what does not run
def pytest_collection_modifyitems(items):
    """The tests marked heavy go first, alternately at the head of each half of the list.

    make test runs two xdist workers (--dist worksteal) that split the list in halves, in
    order, and then steal from each other: a 2-3 minute test collected late leaves one
    worker running it alone at the end; started first, it overlaps the rest of the suite.
    """
    heavy = [item for item in items if item.get_closest_marker("heavy")]
    if not heavy:
        return
    rest = [item for item in items if not item.get_closest_marker("heavy")]
    first, second = heavy[0::2], heavy[1::2]
    cut = max(0, len(items) // 2 - len(first))
    items[:] = [*first, *rest[:cut], *second, *rest[cut:]]


@pytest.fixture
def parquet_corpus(tmp_path):
    return write_parquet_corpus(str(tmp_path / "corpus"))


@pytest.fixture(scope="session")
def image_run(tmp_path_factory):
    """Small image folders, balanced, and a 2-epoch InceptionV3 run on them (random weights, 75 px).

    Shared by the trainer's image test and predict's image test: building, fitting, saving
    and loading InceptionV3 is most of either's time. Returns (folder, out, run, history).
    """
    from training import fit

    root = tmp_path_factory.mktemp("image_run")
    folder = write_folder(root / "imgs", corpus_blobs(size=20))
    run_job(folder, root / "out", "--input_format", "images", "--clusters_per_class", "2",
            "--holdout_fraction", "0.2")
    history = fit.run(["--data", str(root / "out"), "--output", str(root / "run"), "--verbose", "0",
                       "--epochs", "2", "--batch_size", "8", "--image_size", "75", "--weights", "none",
                       "--epoch_size", "32"])
    return folder, str(root / "out"), root / "run", history
