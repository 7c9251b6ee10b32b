"""Shared fixtures: small generated corpora and a helper that runs the job."""

from __future__ import annotations

import glob
import json
import os

# One OpenMP thread per test process, set before scikit-learn loads its libgomp. make test
# runs two xdist workers on two cores; a second OpenMP thread per worker oversubscribes
# them, and a k-means fit of a tiny class then spins for ~0.6 s instead of ~6 ms (the
# 1,000-class test does 1,000 such fits). Results do not depend on the thread count; the
# jobs the tests start as subprocesses inherit the setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The longest tests that share no module fixture, one at the head of each half of the
# list. make test runs two xdist workers that split the list in halves, in order, and then
# steal from each other: a 2-3 minute test collected late leaves one worker running it
# alone at the end; started first, it overlaps the rest of the suite.
LONGEST = ("test_guide.py::test_the_guide_runs_as_written", "test_edge_cases.py::test_a_thousand_classes")


def pytest_collection_modifyitems(items):
    longest = {name: item for item in items for name in LONGEST if item.nodeid.endswith(name)}
    rest = [item for item in items if item not in longest.values()]
    half = len(rest) // 2
    first, second = (longest.get(name) for name in LONGEST)
    items[:] = [x for x in (first, *rest[:half], second, *rest[half:]) if x is not None]


SIZES = {"a": 400, "b": 120, "c": 30, "d": 8}  # imbalance ratio 50


def make_vectors(sizes=SIZES, dim=6, seed=0):
    """Labels and features with 3 Gaussian blobs per class, interleaved."""
    rng = np.random.default_rng(seed)
    labels, feats = [], []
    for ci, (label, n) in enumerate(sizes.items()):
        centres = rng.normal(0, 8, size=(3, dim)) + ci * 20
        which = rng.integers(0, 3, size=n)
        feats.append(centres[which] + rng.normal(0, 1, size=(n, dim)))
        labels += [label] * n
    x = np.concatenate(feats).astype(np.float32)
    perm = rng.permutation(len(labels))
    return [labels[i] for i in perm], x[perm]


BAD_ROWS = [  # (label, features, reason fragment)
    ("a", [float("nan")] * 6, "NaN"),
    ("b", [1.0] * 5, "has 5 values, expected 6"),
    ("", [0.0] * 6, "label is empty"),
    (None, [0.0] * 6, "label is missing"),
    ("c", [float("inf")] + [0.0] * 5, "NaN, inf"),
    ("d", None, "features are missing"),
]


def write_parquet_corpus(folder, files=2, row_group=97, bad=True, dim=6, sizes=SIZES, seed=0):
    labels, x = make_vectors(sizes, dim, seed)
    feats = [list(map(float, r)) for r in x]
    if bad:
        for label, f, _ in BAD_ROWS:
            labels.append(label)
            feats.append(f)
    os.makedirs(folder, exist_ok=True)
    n = len(labels)
    bounds = np.linspace(0, n, files + 1).astype(int)
    for i in range(files):
        sl = slice(bounds[i], bounds[i + 1])
        table = pa.table({
            "label": pa.array(labels[sl], pa.string()),
            "features": pa.array(feats[sl], pa.list_(pa.float32())),
        })
        pq.write_table(table, os.path.join(folder, f"part-{i}.parquet"), row_group_size=row_group)
    return os.path.join(folder, "*.parquet")


@pytest.fixture
def parquet_corpus(tmp_path):
    return write_parquet_corpus(str(tmp_path / "corpus"))


@pytest.fixture(scope="session")
def image_run(tmp_path_factory):
    """Small image folders, balanced, and a 2-epoch InceptionV3 run on them (random weights, 75 px).

    Shared by the trainer's image test and predict's image test: building, fitting, saving
    and loading InceptionV3 is most of either's time. Returns (folder, out, run, history).
    """
    from test_images import corpus_blobs, write_folder

    from training import fit

    root = tmp_path_factory.mktemp("image_run")
    folder = write_folder(root / "imgs", corpus_blobs(size=20))
    run_job(folder, root / "out", "--input_format", "images", "--clusters_per_class", "2",
            "--holdout_fraction", "0.2")
    history = fit.run(["--data", str(root / "out"), "--output", str(root / "run"), "--verbose", "0",
                       "--epochs", "2", "--batch_size", "8", "--image_size", "75", "--weights", "none",
                       "--epoch_size", "32"])
    return folder, str(root / "out"), root / "run", history


def run_job(input_glob, out, *extra, runner="FnApiRunner"):
    from pipelines import balance

    argv = ["--input", input_glob, "--output", str(out), f"--runner={runner}", *extra]
    return balance.run(argv)


def read_manifest(out):
    with open(os.path.join(out, "manifest.json")) as f:
        return json.load(f)


def train_records(out, fmt="parquet"):
    """All train rows as sorted (id, label_text, cluster) tuples, from the files."""
    import pyarrow.dataset as ds

    base = os.path.join(out, "parquet", "train")
    files = sorted(glob.glob(os.path.join(base, "*", "*.parquet")))  # tfrecord.gz files sit beside them
    table = ds.dataset(files, format="parquet", partitioning="hive", partition_base_dir=base).to_table(
        columns=["id", "label_text", "cluster"])
    return sorted(zip(*(table.column(c).to_pylist() for c in ("id", "label_text", "cluster")), strict=True))
