"""training.predict on new files: vectors (labelled, unlabelled, bad rows, a broken file) and images."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import BAD_ROWS, SIZES, make_vectors, run_job, write_parquet_corpus

pytest.importorskip("keras")


def fit(data_dir, run_dir, *extra):
    from training import fit as trainer

    return trainer.run(["--data", data_dir, "--output", str(run_dir), "--verbose", "0", *extra])


def predict(*argv):
    from training import predict as predictor

    return predictor.run(list(map(str, argv)))


def rejected_lines(path):
    return [json.loads(line) for line in open(path)]


@pytest.fixture(scope="module")
def vector_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_vec")
    corpus = write_parquet_corpus(str(root / "corpus"), bad=False)
    run_job(corpus, root / "out", "--strategy", "none", "--holdout_fraction", "0.2")
    fit(str(root / "out"), root / "run", "--epochs", "2", "--batch_size", "64", "--epoch_size", "4096",
        "--learning_rate", "0.01")
    return str(root / "run")


def test_predict_vectors_with_bad_rows_a_broken_file_and_unlabelled_rows(vector_run, tmp_path, capsys):
    new = tmp_path / "new"
    write_parquet_corpus(str(new), files=1, bad=True)  # labelled, with the six bad rows
    labels, x = make_vectors()  # the training distribution: 30 of its records, without labels
    labels, x = labels[:30], x[:30]
    pq.write_table(pa.table({"features": pa.array([list(map(float, r)) for r in x], pa.list_(pa.float32()))}),
                   new / "unlabelled.parquet", row_group_size=7)
    (new / "broken.parquet").write_bytes(b"PAR1 this is not a parquet file")
    capsys.readouterr()
    summary = predict("--run", vector_run, "--input", new, "--output", tmp_path / "preds.parquet",
                      "--batch_size", "50", "--progress_seconds", "0")
    printed = capsys.readouterr().out

    preds = pq.read_table(tmp_path / "preds.parquet").to_pylist()
    labelled = sum(SIZES.values())
    assert len(preds) == summary["records"] == labelled + 30
    assert summary["rejected"] == len(BAD_ROWS) + 1
    bad = rejected_lines(tmp_path / "preds.rejected.jsonl")
    assert len(bad) == len(BAD_ROWS) + 1
    for _, _, fragment in BAD_ROWS:
        assert any(fragment in b["reason"] for b in bad), fragment
    broken = [b for b in bad if b["source"].endswith("broken.parquet")]
    assert len(broken) == 1 and "unreadable file" in broken[0]["reason"]
    assert f"rejected {len(BAD_ROWS) + 1} records, listed in {tmp_path / 'preds.rejected.jsonl'}" in printed
    assert "predict: " in printed  # progress lines (every batch with --progress_seconds 0)

    unlabelled = [p for p in preds if p["source"].endswith("unlabelled.parquet")]
    assert len(unlabelled) == 30 and all(p["label"] is None for p in unlabelled)
    assert sorted(p["row"] for p in unlabelled) == list(range(30))
    assert np.mean([p["predicted"] == want for p, want in zip(unlabelled, labels, strict=True)]) > 0.8
    for p in preds:
        assert len(p["top_labels"]) == len(p["top_probabilities"]) == 3
        assert p["top_labels"][0] == p["predicted"] and p["top_probabilities"][0] == pytest.approx(p["probability"])
        assert p["top_probabilities"] == sorted(p["top_probabilities"], reverse=True)
    assert len({p["id"] for p in preds}) == len(preds)
    report = summary["report"]
    assert report["records"] == labelled and report["macro_f1"] > 0.5
    assert "records had labels" in printed and "macro" in printed


def test_predict_matches_by_name_and_reports_unseen_labels_and_csv(vector_run, tmp_path):
    labels, x = make_vectors({"a": 30, "b": 10}, seed=3)
    names = ["f0", "f1", "f2", "f3", "f4", "f5"]
    rows = [",".join(["label", *names])]
    rows += [",".join([("new" if lab == "b" else lab), *map(str, r)]) for lab, r in zip(labels, x, strict=True)]
    rows.append("a,1,2,3")  # a short row: rejected with the reason
    (tmp_path / "in.csv").write_text("\n".join(rows) + "\n")
    summary = predict("--run", vector_run, "--input", tmp_path / "in.csv", "--output", tmp_path / "p.parquet")
    assert summary["records"] == 40 and summary["rejected"] == 1
    assert "expected 7" in rejected_lines(tmp_path / "p.rejected.jsonl")[0]["reason"]
    report = summary["report"]
    assert report["records"] == 30 and report["classes"]["a"]["support"] == 30
    assert report["unseen"]["new"]["records"] == 10


def test_predict_images_as_training_decodes_them(image_run, tmp_path):
    from helpers import bad_images, corpus_blobs

    from training.data import decode_images

    folder, _, run, _ = image_run  # an InceptionV3 run on these image folders (tests/conftest.py)
    new = tmp_path / "new"
    shutil.copytree(os.path.join(folder, "dog"), new / "dog")
    for name, data, _ in bad_images():
        (new / "cat").mkdir(exist_ok=True)
        (new / "cat" / name).write_bytes(data)
    (new / "loose.png").write_bytes(next(b for _, n, b in corpus_blobs(size=20) if n == "eel-0.png"))
    summary = predict("--run", run, "--input", new, "--output", tmp_path / "p.parquet", "--top_k", "2")
    bad = {os.path.basename(b["source"]): b["reason"] for b in rejected_lines(tmp_path / "p.rejected.jsonl")}
    for name, _, fragment in bad_images():
        if fragment and "over the cap" not in fragment:  # the job ran with --max_pixels 100000 there
            assert fragment in bad[name], name
        else:
            assert name not in bad
    preds = {os.path.basename(p["source"]): p for p in pq.read_table(tmp_path / "p.parquet").to_pylist()}
    assert len(preds) == summary["records"] == 12 + 1 + len(bad_images()) - len(bad)
    assert preds["loose.png"]["label"] is None and preds["dog-0.png"]["label"] == "dog"
    assert all(len(p["top_labels"]) == 2 for p in preds.values())
    # the same pixels as training: the model's output on decode_images equals the file's prediction
    import keras

    model = keras.models.load_model(run / "model.keras", safe_mode=True)
    blob = (new / "dog" / "dog-0.png").read_bytes()
    probs = np.asarray(model.predict_on_batch(decode_images([blob], 75)))[0]
    assert probs.max() == pytest.approx(preds["dog-0.png"]["probability"], rel=1e-5)


def test_predict_on_a_balance_output_takes_its_columns_from_the_manifest(vector_run, tmp_path):
    out = os.path.join(os.path.dirname(vector_run), "out")
    explicit = predict("--run", vector_run, "--input", os.path.join(out, "parquet", "val"), "--output",
                       tmp_path / "a.parquet", "--feature_column", "features", "--label_column", "label_text")
    by_split = predict("--run", vector_run, "--input", out, "--split", "val", "--output", tmp_path / "b.parquet")
    by_folder = predict("--run", vector_run, "--input", os.path.join(out, "parquet", "val") + "/",
                        "--output", tmp_path / "c.parquet")
    assert explicit["report"] is not None and explicit["records"] > 0
    assert by_split == by_folder == explicit
    table = pq.read_table(tmp_path / "b.parquet")
    assert table.equals(pq.read_table(tmp_path / "a.parquet"))
    with pytest.raises(ValueError, match="--split"):
        predict("--run", vector_run, "--input", out, "--output", tmp_path / "d.parquet")


@pytest.mark.heavy
def test_predict_and_evaluate_run_where_beam_cannot_be_imported(vector_run, tmp_path):
    """They import no Beam: with apache_beam made unimportable they run, and print no warning."""
    import subprocess
    import sys

    blocker = tmp_path / "blocked" / "apache_beam"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('apache_beam is blocked in this test')\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PIPELINES_QUIETED_TF")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "blocked"), root])  # as a user runs them
    out = os.path.join(os.path.dirname(vector_run), "out")
    for argv in (["training.predict", "--run", vector_run, "--input", out, "--split", "val",
                  "--output", str(tmp_path / "p.parquet")],
                 ["training.evaluate", "--run", vector_run, "--data", out, "--split", "val"]):
        done = subprocess.run([sys.executable, "-m", *argv], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "macro" in done.stdout
        assert not [line for line in done.stderr.splitlines() if "warn" in line.lower()], done.stderr
