"""The test split (scored once, after training), evaluate on another output, quiet commands."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import SIZES, make_vectors, read_manifest, run_job, write_parquet_corpus

pytest.importorskip("keras")

ARGS = ["--epochs", "3", "--epoch_size", "1024", "--batch_size", "32", "--learning_rate", "0.01", "--verbose", "0"]
# C++ lines TensorFlow prints unless quieted: absl's start-up note, I/W/E/F lines such as
# "I0000 00:00:1796022016.659002 4174 cudart_stub.cc:31] Could not find cuda drivers"
NOISE = re.compile(r"absl::InitializeLog|^[IWEF]\d{4} \d\d:\d\d:\d\d|cudart_stub|cuInit|cpu_feature_guard|"
                   r"buffer_size` is unspecified", re.M)


@pytest.fixture(scope="module")
def split_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_test_split")
    corpus = write_parquet_corpus(str(root / "corpus"), bad=False)
    run_job(corpus, root / "out", "--strategy", "none", "--num_shards", "2", "--holdout_fraction", "0.2",
            "--test_fraction", "0.2")
    return str(root / "out")


@pytest.fixture(scope="module")
def trained(split_out, tmp_path_factory):
    from training import fit

    run = tmp_path_factory.mktemp("runs") / "with_test"
    return str(run), fit.run(["--data", split_out, "--output", str(run), *ARGS])


def without_test(out: str, dest) -> str:
    """A copy of `out` as if balanced without --test_fraction: no test/ folders, an empty test entry."""
    shutil.copytree(out, dest)
    m = read_manifest(dest)
    for fmt in m["formats"]:
        shutil.rmtree(dest / fmt / "test")
    m["test"] = {"records": 0, "shards": {}}
    (dest / "manifest.json").write_text(json.dumps(m))
    return str(dest)


def test_removing_the_test_split_changes_the_history_only_by_its_final_score(split_out, trained, tmp_path):
    from training import fit

    run, history = trained
    manifest = read_manifest(split_out)
    assert manifest["test"]["records"] > 0
    plain = fit.run(["--data", without_test(split_out, tmp_path / "notest"), "--output", str(tmp_path / "b"), *ARGS])
    assert json.loads((tmp_path / "b" / "history.json").read_text()) == plain
    assert not any("test" in h for h in plain)
    assert json.load(open(os.path.join(run, "history.json"))) == history
    scored = [h for h in history if "test" in h]
    best = max(history, key=lambda h: h["val_macro_f1"])  # the earliest best: the epoch of model.keras
    assert len(scored) == 1 and scored[0] is best
    for got, want in zip(history, plain, strict=True):  # test/ drove nothing: same losses, F1s, shares
        assert set(got) - {"test"} == set(want)
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
        assert got["val_macro_f1"] == pytest.approx(want["val_macro_f1"], abs=1e-12)
        for label, c in want["classes"].items():
            assert {k: v for k, v in got["classes"][label].items() if k != "f1"} == \
                {k: v for k, v in c.items() if k != "f1"}
            assert got["classes"][label]["f1"] == pytest.approx(c["f1"], abs=1e-12)
    test = best["test"]
    assert set(test) == {"records", "macro_f1", "accuracy", "classes"}
    assert test["records"] == manifest["test"]["records"] == sum(c["support"] for c in test["classes"].values())
    assert {label: c["support"] for label, c in test["classes"].items()} == \
        {c["label"]: c["test"] for c in manifest["classes"]}
    assert test["macro_f1"] > 0.5  # well-separated blobs


def test_evaluate_split_test_equals_the_score_in_the_history(split_out, trained, tmp_path):
    from training import evaluate

    run, history = trained
    want = next(h["test"] for h in history if "test" in h)
    report = evaluate.run(["--run", run, "--data", split_out, "--split", "test"])
    assert report["split"] == "test" and report["unseen"] == {}
    assert report["macro_f1"] == pytest.approx(want["macro_f1"], abs=1e-12)
    assert report["classes"] == want["classes"]
    assert os.path.exists(os.path.join(run, "eval-test.json")) and os.path.exists(os.path.join(run, "confusion-test.png"))
    with pytest.raises(ValueError, match="has no test records: re-run pipelines.balance with --test_fraction"):
        evaluate.run(["--run", run, "--data", without_test(split_out, tmp_path / "notest"), "--split", "test"])


def test_evaluate_on_another_output_matches_classes_by_name_and_reports_unseen_labels(trained, tmp_path, capsys):
    """Another corpus, balanced with --strategy none: classes c and d (at other indices
    there: 0 and 1) and a label the model never saw, "zebra" (drawn like class a)."""
    from training import evaluate

    run, _ = trained
    labels, x = make_vectors(SIZES, 6, 0)  # the distribution the model was trained on
    labels = np.array(labels, object)
    keep = np.isin(labels, ["a", "c", "d"])
    labels, x = labels[keep], x[keep]
    labels[labels == "a"] = "zebra"
    (tmp_path / "other").mkdir()
    pq.write_table(pa.table({"label": pa.array(list(labels), pa.string()),
                             "features": pa.array([list(map(float, r)) for r in x], pa.list_(pa.float32()))}),
                   tmp_path / "other" / "part-0.parquet")
    run_job(str(tmp_path / "other" / "*.parquet"), tmp_path / "other_out", "--strategy", "none",
            "--holdout_fraction", "0.5")
    m = read_manifest(tmp_path / "other_out")
    assert [c["label"] for c in m["classes"]] == ["c", "d", "zebra"]
    capsys.readouterr()
    report = evaluate.run(["--run", run, "--data", str(tmp_path / "other_out")])
    val = {c["label"]: c["val"] for c in m["classes"]}
    assert report["records"] == val["c"] + val["d"]  # zebra's records are not scored...
    assert report["unseen"]["zebra"]["records"] == val["zebra"]  # ...but reported, with the predictions
    assert max(report["unseen"]["zebra"]["predicted"].items(), key=lambda kv: kv[1])[0] == "a"
    assert report["classes"]["a"]["support"] == report["classes"]["b"]["support"] == 0
    assert report["classes"]["a"]["recall"] is None
    assert report["classes"]["c"]["support"] == val["c"] and report["classes"]["d"]["support"] == val["d"]
    import keras  # recall of c: the share of c's val records the model calls "c" (its class 2, not 0)

    model = keras.models.load_model(os.path.join(run, "model.keras"), safe_mode=True)
    rows = pq.read_table(tmp_path / "other_out" / m["val"]["shards"]["parquet"][0]["path"]).to_pylist()
    x_c = np.array([r["features"] for r in rows if r["label_text"] == "c"], np.float32)
    hits = (np.asarray(model.predict_on_batch(x_c)).argmax(axis=1) == 2).mean()
    assert report["classes"]["c"]["recall"] == pytest.approx(hits)
    printed = capsys.readouterr().out
    assert f"not scored: {val['zebra']} records labelled 'zebra', a class the model never saw" in printed
    assert os.path.exists(os.path.join(run, "eval-val-other_out.json"))  # the run's own eval-val.json untouched


def test_commands_print_no_tensorflow_noise(split_out, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PIPELINES_QUIETED_TF")}
    helped = subprocess.run([sys.executable, "-m", "training.fit", "--help"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert helped.returncode == 0 and "--data" in helped.stdout
    assert not NOISE.search(helped.stderr), helped.stderr
    cmd = [sys.executable, "-m", "training.fit", "--data", split_out, "--output", str(tmp_path / "run"),
           "--epochs", "1", "--epoch_size", "256", "--verbose", "0"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not NOISE.search(done.stderr), done.stderr
    assert "epoch 1: loss" in done.stdout and "test (scored once, model of epoch 1): macro-F1" in done.stdout
