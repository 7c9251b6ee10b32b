"""pipelines.balance end to end on the FnApiRunner: the files agree with the manifest."""

from __future__ import annotations

import collections
import glob
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import BAD_ROWS, SIZES, read_manifest, run_job, train_records, write_parquet_corpus

N_INPUT = sum(SIZES.values()) + len(BAD_ROWS)


def tfrecord_count(path):
    import tensorflow as tf

    return sum(1 for _ in tf.data.TFRecordDataset(path, compression_type="GZIP"))


@pytest.fixture(scope="module")
def balanced(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    corpus = write_parquet_corpus(str(root / "corpus"))
    out = root / "out"
    manifest = run_job(corpus, out, "--num_shards", "2", "--clusters_per_class", "3")
    return corpus, str(out), manifest


def test_manifest_counts_equal_the_files(balanced):
    _, out, m = balanced
    assert m == read_manifest(out)
    assert m["schema_version"] == 2 and m["formats"] == ["parquet", "tfrecord"]
    for c in m["classes"]:
        for fmt in m["formats"]:
            assert len(c["shards"][fmt]) == 2
            for shard in c["shards"][fmt]:
                path = os.path.join(out, shard["path"])
                n = pq.read_metadata(path).num_rows if fmt == "parquet" else tfrecord_count(path)
                assert n == shard["records"]
            assert sum(s["records"] for s in c["shards"][fmt]) == c["output"]
        table = pq.ParquetDataset([os.path.join(out, s["path"]) for s in c["shards"]["parquet"]]).read()
        assert set(table.column("label_text").to_pylist()) == {c["label"]}
        assert set(table.column("label").to_pylist()) == {c["index"]}
        counts = collections.Counter(table.column("cluster").to_pylist())
        for cl in c["clusters"]:
            assert counts.get(cl["id"], 0) == cl["output"] == cl["quota"]
    val = sum(pq.read_metadata(os.path.join(out, s["path"])).num_rows for s in m["val"]["shards"]["parquet"])
    assert val == m["val"]["records"] == m["totals"]["holdout"]


def test_class_totals_exact_and_counts_reconcile(balanced):
    _, _, m = balanced
    t = m["totals"]
    assert t["read"] == N_INPUT
    assert t["read"] == t["rejected"] + t["holdout"] + t["train_input"]
    targets = {c["target"] for c in m["classes"]}
    assert len(targets) == 1  # the cluster strategy brings every class to T
    # T = max over classes of K_c * largest cluster
    jj = max(sum(1 for x in c["clusters"] if x["input"]) * max(x["input"] for x in c["clusters"])
             for c in m["classes"])
    assert targets == {jj}
    for c in m["classes"]:
        assert c["input"] == c["holdout"] + c["train_input"] == SIZES[c["label"]]
        assert c["output"] == c["target"] == sum(x["output"] for x in c["clusters"])
        live = [x["quota"] for x in c["clusters"] if x["input"]]
        assert max(live) - min(live) <= 1
        assert 0.04 < c["holdout"] / c["input"] < 0.2 or c["input"] < 20


def test_rejected_rows_have_their_reasons(balanced):
    _, out, m = balanced
    lines = [json.loads(x) for f in glob.glob(os.path.join(out, "rejected", "*.jsonl")) for x in open(f)]
    assert len(lines) == len(BAD_ROWS) == m["rejected"]["records"]
    reasons = " | ".join(x["reason"] for x in lines)
    for _, _, fragment in BAD_ROWS:
        assert fragment in reasons
    assert all(x["source"].endswith(".parquet") and x["row"] >= 0 for x in lines)


def test_val_is_disjoint_from_train_and_nothing_temporary_is_left(balanced):
    _, out, _ = balanced
    train_ids = {r[0] for r in train_records(out)}
    val = pq.ParquetDataset(glob.glob(os.path.join(out, "parquet", "val", "*.parquet"))).read()
    assert not train_ids & set(val.column("id").to_pylist())
    assert set(val.column("cluster").to_pylist()) == {-1}
    leftovers = [p for p in glob.glob(os.path.join(out, "**"), recursive=True)
                 if ".staging" in p or "inprogress" in p]
    assert leftovers == []
    assert os.path.getsize(os.path.join(out, "report.png")) > 1000


def test_same_records_whatever_the_files_and_batch_sizes(balanced, tmp_path):
    corpus, out, _ = balanced
    other = write_parquet_corpus(str(tmp_path / "resplit"), files=3, row_group=31)
    run_job(other, tmp_path / "out2", "--num_shards", "2", "--clusters_per_class", "3", "--batch_size", "17")
    assert train_records(out) == train_records(tmp_path / "out2")
    for a, b in zip(sorted(glob.glob(os.path.join(out, "parquet", "train", "*", "*.parquet"))),
                    sorted(glob.glob(os.path.join(tmp_path, "out2", "parquet", "train", "*", "*.parquet"))), strict=True):
        assert pq.read_table(a).equals(pq.read_table(b))  # same rows, same order, same shard


# make test runs the same DirectRunner multi_processing job, and compares its records, in
# test_output_safety.py::test_duplicate_ids_give_the_same_records_and_bytes_on_any_batch_size_and_runner
@pytest.mark.slow
def test_multi_processing_mode_gives_identical_records(balanced, tmp_path):
    corpus, out, _ = balanced
    run_job(corpus, tmp_path / "mp", "--num_shards", "2", "--clusters_per_class", "3",
            "--direct_running_mode=multi_processing", "--direct_num_workers=2", runner="DirectRunner")
    assert train_records(out) == train_records(tmp_path / "mp")


def test_rerun_into_same_folder_removes_stale_shards(balanced, tmp_path):
    corpus, _, _ = balanced
    out = tmp_path / "again"
    run_job(corpus, out, "--num_shards", "3", "--output_format", "parquet")
    m = run_job(corpus, out, "--num_shards", "1", "--output_format", "parquet")
    files = sorted(os.path.relpath(p, out) for p in glob.glob(str(out / "*" / "train" / "*" / "*")))
    assert files == sorted(s["path"] for c in m["classes"] for s in c["shards"]["parquet"])


@pytest.mark.parametrize("strategy,expect", [
    ("oversample", lambda c, big: c["output"] == big),
    ("undersample", lambda c, big: c["output"] == min(x["train_input"] for x in c["_all"])),
    ("none", lambda c, big: c["output"] == c["train_input"]),
])
def test_random_strategies(tmp_path, parquet_corpus, strategy, expect):
    m = run_job(parquet_corpus, tmp_path / strategy, "--strategy", strategy, "--output_format", "parquet")
    big = max(c["train_input"] for c in m["classes"])
    for c in m["classes"]:
        c["_all"] = m["classes"]
        assert expect(c, big), (strategy, c["label"], c["output"])
        assert [x["id"] for x in c["clusters"]] == [0]
    counts = collections.Counter(r[1] for r in train_records(tmp_path / strategy))
    assert counts == {c["label"]: c["output"] for c in m["classes"]}


def test_target_counts_and_number_target(tmp_path, parquet_corpus):
    m = run_job(parquet_corpus, tmp_path / "o", "--target", "150", "--target_counts", '{"d": 40}',
                "--output_format", "parquet")
    assert {c["label"]: c["output"] for c in m["classes"]} == {"a": 150, "b": 150, "c": 150, "d": 40}


def test_csv_input_with_bad_rows(tmp_path):
    rows = ["label,f0,f1,f2"]
    rng = np.random.default_rng(0)
    for i in range(200):
        label = "x" if i % 10 else "y"
        rows.append(f"{label}," + ",".join(f"{v:.4f}" for v in rng.normal(size=3)))
    rows += ["y,1,2", "x,1,abc,3", "x,1,,3", ",1,2,3", "y,1,2,3,4"]
    path = tmp_path / "data.csv"
    path.write_text("\n".join(rows) + "\n")
    m = run_job(str(path), tmp_path / "out", "--strategy", "oversample", "--output_format", "parquet")
    t = m["totals"]
    assert t["read"] == 205 and t["rejected"] == 5
    assert m["payload"] == {"kind": "features", "dim": 3}
    reasons = sorted(json.loads(x)["reason"] for x in open(glob.glob(str(tmp_path / "out/rejected/*.jsonl"))[0]))
    assert reasons == sorted([
        "row has 3 fields, expected 4", "value 'abc' in column 'f1' is not a number",
        "missing value in column 'f1'", "label is missing", "row has 5 fields, expected 4"])


def test_tfrecord_input_with_integer_labels_and_ids(tmp_path):
    tf = pytest.importorskip("tensorflow")
    path = str(tmp_path / "data.tfrecord.gz")
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(path, options="GZIP") as w:
        for i in range(150):
            label = 0 if i % 5 else 10
            n = 4 if i != 7 else 3
            ex = tf.train.Example(features=tf.train.Features(feature={
                "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"rec-{i}".encode()])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                "features": tf.train.Feature(float_list=tf.train.FloatList(value=rng.normal(size=n).tolist())),
            }))
            w.write(ex.SerializeToString())
    m = run_job(path, tmp_path / "out", "--clusters_per_class", "2", "--output_format", "tfrecord")
    assert [c["label"] for c in m["classes"]] == ["0", "10"]  # numeric order
    assert m["payload"]["dim"] == 4  # the most common length
    assert m["totals"]["rejected"] == 1
    ids = set()
    for c in m["classes"]:
        for s in c["shards"]["tfrecord"]:
            for rec in tf.data.TFRecordDataset(os.path.join(tmp_path, "out", s["path"]), compression_type="GZIP"):
                ids.add(tf.train.Example.FromString(rec.numpy()).features.feature["id"].bytes_list.value[0])
    assert all(i.startswith(b"rec-") for i in ids)


def test_unreadable_file_fails_naming_it_or_is_rejected(tmp_path):
    folder = tmp_path / "mixed"
    write_parquet_corpus(str(folder), files=1, bad=False)
    (folder / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    from transforms.sources import UnreadableFile

    with pytest.raises(Exception, match="broken.parquet"):
        run_job(str(folder), tmp_path / "o1")
    m = run_job(str(folder), tmp_path / "o2", "--reject_unreadable_files", "--output_format", "parquet")
    assert m["totals"]["rejected"] == 1 and m["totals"]["read"] == sum(SIZES.values()) + 1
    assert UnreadableFile


def test_clear_errors_before_running(tmp_path):
    from pipelines import balance

    with pytest.raises(ValueError, match="matches no parquet file"):
        balance.run(["--input", str(tmp_path / "none*.parquet"), "--output", str(tmp_path / "o")])
    single = tmp_path / "one"
    single.mkdir()
    pq.write_table(pa.table({"label": ["a"] * 5, "features": [[1.0, 2.0]] * 5}), single / "x.parquet")
    with pytest.raises(Exception, match="single class"):
        run_job(str(single), tmp_path / "o")
    with pytest.raises(ValueError, match="--holdout_fraction must be in"):
        run_job(str(single), tmp_path / "o", "--holdout_fraction", "1.5")


def test_demo_runs_as_the_default(tmp_path, capsys):
    from PIL import Image

    from pipelines import balance

    m = balance.run(["--demo_dir", str(tmp_path / "demo"), "--runner=FnApiRunner"])
    assert m["payload"]["kind"] == "image"
    inputs = [c["input"] for c in m["classes"]]
    assert max(inputs) / min(inputs) >= 20
    assert m["totals"]["rejected"] == 2
    first = sorted(glob.glob(str(tmp_path / "demo" / "images" / "9" / "*.png")))[0]
    assert min(Image.open(first).size) >= 75  # large enough for InceptionV3
    printed = capsys.readouterr().out
    assert "read 565 = rejected 2" in printed and "manifest.json" in printed


def test_vector_demo(tmp_path):
    from pipelines import balance

    m = balance.run(["--demo", "vectors", "--demo_dir", str(tmp_path / "demo"), "--runner=FnApiRunner"])
    assert m["payload"] == {"kind": "features", "dim": 64}
    inputs = [c["input"] for c in m["classes"]]
    assert max(inputs) / min(inputs) >= 20 and m["totals"]["rejected"] == 3


def test_output_is_complete_when_writers_flush_mid_bundle(tmp_path, parquet_corpus, monkeypatch):
    from pipelines.outputs import fragments

    monkeypatch.setattr(fragments, "FLUSH_BYTES", 4096)  # in-process runner: every few rows
    m = run_job(parquet_corpus, tmp_path / "o", "--output_format", "parquet", "--num_shards", "3")
    counts = collections.Counter(r[1] for r in train_records(tmp_path / "o"))
    assert counts == {c["label"]: c["target"] for c in m["classes"]}


def test_vector_column_types_and_dimension_sources(tmp_path):
    """list, large_list and fixed_size_list columns, and separate numeric columns, give the same records."""
    from helpers import make_vectors

    labels, x = make_vectors(dim=4)
    layouts = {
        "list": pa.array([list(map(float, r)) for r in x], pa.list_(pa.float32())),
        "large_list": pa.array([list(map(float, r)) for r in x], pa.large_list(pa.float64())),
        "fixed": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 4),
    }
    results = {}
    for name, col in layouts.items():
        d = tmp_path / name
        d.mkdir()
        pq.write_table(pa.table({"label": labels, "features": col}), d / "x.parquet", row_group_size=100)
        extra = ["--feature_dim", "4"] if name == "large_list" else []
        m = run_job(str(d), tmp_path / f"out-{name}", "--output_format", "parquet", *extra)
        assert m["payload"] == {"kind": "features", "dim": 4}
        results[name] = train_records(tmp_path / f"out-{name}")
    cols = tmp_path / "columns"
    cols.mkdir()
    pq.write_table(pa.table({"label": labels, **{f"f{j}": x[:, j] for j in range(4)}}), cols / "x.parquet")
    run_job(str(cols), tmp_path / "out-cols", "--output_format", "parquet", "--feature_columns", "f0,f1,f2,f3")
    results["columns"] = train_records(tmp_path / "out-cols")
    first = results["list"]
    assert all(r == first for r in results.values())


def test_csv_with_quoted_header_and_bom(tmp_path):
    rng = np.random.default_rng(1)
    lines = ['"label","x1","x2"'] + [f'"{"a" if i % 3 else "b"}",{v[0]:.3f},{v[1]:.3f}'
                                     for i, v in enumerate(rng.normal(size=(60, 2)))]
    path = tmp_path / "r.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode())
    m = run_job(str(path), tmp_path / "o", "--strategy", "oversample", "--output_format", "parquet")
    assert m["totals"]["read"] == 60 and m["payload"]["dim"] == 2


def test_awkward_labels_tiny_and_identical_classes(tmp_path):
    """Labels with '/', spaces, dots, unicode, colliding folder names; 1 record; identical records; k > size."""
    rng = np.random.default_rng(0)
    labels, feats = [], []
    for label, n, same in [("a/b", 50, False), ("a_b", 40, False), ("with space", 30, False),
                           ("dots.in.name", 20, False), ("ünï", 10, False), ("..", 5, False),
                           ("one", 1, False), ("same", 25, True)]:
        labels += [label] * n
        feats += [[1.0, 2.0, 3.0]] * n if same else rng.normal(size=(n, 3)).tolist()
    pq.write_table(pa.table({"label": labels, "features": feats}), tmp_path / "x.parquet")
    m = run_job(str(tmp_path / "x.parquet"), tmp_path / "out", "--clusters_per_class", "40")
    dirs = {c["label"]: c["dir"] for c in m["classes"]}
    assert dirs["a/b"] == "class=a_b" and dirs["a_b"] == "class=a_b~2" and dirs[".."] == "class=_"
    assert dirs["ünï"] == "class=ünï" and len(set(dirs.values())) == len(dirs)
    by = {c["label"]: c for c in m["classes"]}
    assert by["one"]["train_input"] == 1 and by["one"]["holdout"] == 0
    assert sum(1 for x in by["same"]["clusters"] if x["input"]) == 1  # identical records: one cluster
    assert len({c["output"] for c in m["classes"]}) == 1  # every class to the same T
    for c in m["classes"]:
        for s in c["shards"]["parquet"]:
            assert os.path.exists(os.path.join(tmp_path, "out", s["path"]))
    counts = collections.Counter(r[1] for r in train_records(tmp_path / "out"))
    assert counts == {c["label"]: c["output"] for c in m["classes"]}


def test_progress_of_every_pass_and_the_summary(tmp_path, parquet_corpus, caplog, capsys):
    import logging

    caplog.set_level(logging.INFO, logger="pipelines")
    m = run_job(parquet_corpus, tmp_path / "out", "--progress_seconds", "0", "--output_format", "parquet")
    lines = [r.getMessage() for r in caplog.records]
    for name in ("pass 1/4 (class counts)", "pass 2/4 (k-means sample)", "pass 3/4 (cluster histograms)",
                 "pass 4/4 (resample)"):
        assert any(x.startswith(f"{name}: ") and "records read so far" in x for x in lines), name
        assert f"{name}: done, {N_INPUT:,} records read" in lines, name
    out = capsys.readouterr().out
    assert f"read {N_INPUT} = rejected {m['totals']['rejected']} + held out {m['totals']['holdout']}" in out
    assert f"    train/       {m['totals']['output']} records in 4 class folders" in out


def _shard_bytes(out):
    files = sorted(glob.glob(os.path.join(out, "*", "**", "*.*"), recursive=True))
    return {os.path.relpath(f, out): open(f, "rb").read() for f in files if f.endswith((".parquet", ".gz", ".jsonl"))}


def test_passes_over_the_cache_on_processes_write_the_same_files(balanced, tmp_path, monkeypatch):
    """The read passes (a unit, then a cache file at a time) and the merges run on forked
    processes (--processes 2), several at once, or in the job's process (0): the same bytes
    in every shard of both formats. Pass 1 is made to write many small cache files, so
    several are in flight at once."""
    from pipelines import parallel
    from pipelines.outputs import fragments

    submitted, real = [], parallel.processes

    class Recorded:  # the driver's pool, its submissions recorded
        def __init__(self, pool):
            self.pool = pool

        def submit(self, fn, *args):
            work = args[0] if fn is parallel._call else fn  # the stage's function, its side inputs after it
            submitted.append(getattr(work, "__name__", type(work).__name__))
            return self.pool.submit(fn, *args)

        def __getattr__(self, name):
            return getattr(self.pool, name)

    def recorded():
        pool, width = real()
        return (Recorded(pool) if pool is not None else None), width

    monkeypatch.setattr(parallel, "processes", recorded)
    monkeypatch.setattr(fragments, "FLUSH_BYTES", 2000)
    runs = {}
    for processes in ("0", "2"):
        out = tmp_path / f"p{processes}"
        m = run_job(balanced[0], out, "--num_shards", "2", "--clusters_per_class", "3", "--batch_size", "40",
                    "--processes", processes, "--output_format", "both")
        runs[processes] = (_shard_bytes(out), m["classes"], m["totals"])
        if processes == "0":
            assert submitted == []
    # the second run's units, cache files, fits and merges went to the processes, several cache files each pass
    assert {"read_into_cache", "over_file", "FitKMeans", "merge_shards"} <= set(submitted) and submitted.count("over_file") > 6
    assert runs["0"] == runs["2"] and sum(f.endswith(".gz") for f in runs["2"][0]) > 4
    assert runs["2"][2]["read"] == N_INPUT


def test_a_dead_pass_process_leaves_the_files_to_this_process(balanced, tmp_path, monkeypatch, caplog):
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from pipelines import parallel

    class DeadPool:
        def submit(self, *args):
            dead = Future()
            dead.set_exception(BrokenProcessPool("a job process died"))
            return dead

    monkeypatch.setattr(parallel, "processes", lambda: (DeadPool(), 2))
    out = tmp_path / "dead"
    m = run_job(balanced[0], out, "--num_shards", "2", "--clusters_per_class", "3", "--processes", "2",
                "--output_format", "parquet")
    assert "a job process died; the elements left run in this process" in caplog.text
    want = run_job(balanced[0], tmp_path / "none", "--num_shards", "2", "--clusters_per_class", "3",
                   "--processes", "0", "--output_format", "parquet")
    assert _shard_bytes(out) == _shard_bytes(tmp_path / "none") and m["totals"] == want["totals"]
