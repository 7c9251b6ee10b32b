"""Every command on gs:// and s3:// paths, against local emulators (tests/object_stores.py).

Each test checks the objects themselves: the same bytes as the same command on local
paths, exactly the new manifest's files after a re-run (plus foreign objects), nothing
left under .staging/, the same scores from the trainer.
"""

from __future__ import annotations

import glob
import json
import os
import socket

import object_stores
import pytest
from helpers import run_job, write_parquet_corpus

from pipelines import parallel
from transforms import remote_files, storage

STORES = ("gs", "s3")


@pytest.fixture(params=STORES)
def store(request, monkeypatch):
    s = object_stores.start(request.param)
    for k, v in s.env.items():
        monkeypatch.setenv(k, v)
    remote_files.configure()  # this process's FileSystems: the environment just set
    # The job's processes outlive a job in this test process; forked before the store's
    # environment was set, their workers would not reach it (a command line forks them anew).
    parallel.shutdown()
    yield s
    parallel.shutdown()


def local_tree(folder: str) -> dict[str, bytes]:
    return {os.path.relpath(p, folder): open(p, "rb").read()
            for p in glob.glob(os.path.join(folder, "**"), recursive=True) if os.path.isfile(p)}


def remote_tree(url: str) -> dict[str, bytes]:
    top = url.rstrip("/") + "/"
    return {p[len(top):]: storage.read_bytes(p) for p in storage.list_files(url)}


def listed(manifest: dict) -> set[str]:
    from pipelines.outputs import output_dir

    return set(output_dir.listed_files(manifest)) | {"manifest.json"}


def comparable(manifest: dict) -> dict:
    """A manifest without what names the run (paths, timings)."""
    return {k: v for k, v in manifest.items() if k not in ("options", "run")}


def rejected_rows(tree: dict[str, bytes]) -> list[dict]:
    rows = [json.loads(line) for line in tree["rejected/part-00000-of-00001.jsonl"].splitlines()]
    return [r | {"source": r["source"].rsplit("/", 1)[-1]} for r in rows]


def upload_folder(folder: str, url: str) -> None:
    for rel, data in local_tree(folder).items():
        storage.write_bytes(storage.join(url, rel.replace(os.sep, "/")), data)


def test_balance_rerun_and_histogram_on_an_object_store(tmp_path, store, caplog):
    corpus = str(tmp_path / "corpus")
    write_parquet_corpus(corpus, files=2)
    bucket = store.bucket()
    upload_folder(corpus, f"{bucket}/corpus")
    out = f"{bucket}/out"
    flags = ["--output_format", "both", "--num_shards", "2", *store.flags]
    local = tmp_path / "local"
    m_local = run_job(corpus + "/*.parquet", local, "--output_format", "both", "--num_shards", "2")
    # a crashed run's lock (its process is gone) and staging are taken over and removed
    stale = {"host": socket.gethostname(), "pid": 2**22 + 12345, "command": "pipelines.balance", "token": "x",
             "started": "2026-01-01T00:00:00+0000"}
    storage.write_bytes(f"{out}/.lock", json.dumps(stale).encode())
    storage.write_bytes(f"{out}/.staging/0123456789abcdef0123456789abcdef/previous.json", b"[]")
    # a folder given without its trailing slash, on the store
    m = run_job(f"{bucket}/corpus", out, *flags)
    assert "taking over" in caplog.text
    assert comparable(m) == comparable(m_local)
    objects = remote_tree(out)
    assert set(objects) == listed(m)  # no staging, no lock, nothing else
    files = local_tree(str(local))
    for rel in listed(m) - {"manifest.json", "rejected/part-00000-of-00001.jsonl"}:
        assert objects[rel] == files[rel], rel
    assert rejected_rows(objects) == rejected_rows(files)  # their sources name the input files
    storage.write_bytes(f"{out}/parquet/train/notes.txt", b"a user's file")  # foreign: must stay

    # a re-run with other shards and one format replaces exactly what the first wrote
    m2 = run_job(f"{bucket}/corpus/", out, "--output_format", "parquet", "--num_shards", "3", *store.flags)
    objects = remote_tree(out)
    assert set(objects) == listed(m2) | {"parquet/train/notes.txt"}
    assert not any(p.startswith("tfrecord/") or ".staging" in p for p in objects)
    assert sum(s["records"] for c in m2["classes"] for s in c["shards"]["parquet"]) == m2["totals"]["output"]

    # the histogram job beside it: its files, and no staging left
    from pipelines import histogram

    h = histogram.run(["--input", f"{bucket}/corpus", "--output", out, "--runner=FnApiRunner", *store.flags])
    objects = remote_tree(out)
    assert {"histogram.json", "histogram.png"} <= set(objects)
    assert json.loads(objects["histogram.json"])["totals"] == h["totals"]
    assert not any(".staging" in p or p == ".lock" for p in objects)


def test_a_missing_bucket_is_one_clear_error(tmp_path, store):
    corpus = write_parquet_corpus(str(tmp_path / "corpus"), files=1)
    with pytest.raises(ValueError, match="does not exist"):
        run_job(corpus, f"{store.scheme}://no-such-bucket-here/out", *store.flags)


def test_fit_evaluate_predict_on_an_object_store(tmp_path, store):
    from training import evaluate, fit, predict

    corpus = write_parquet_corpus(str(tmp_path / "corpus"), files=1)
    local_out = tmp_path / "out"
    run_job(corpus, local_out, "--output_format", "parquet", "--test_fraction", "0.2")
    bucket = store.bucket()
    upload_folder(str(local_out), f"{bucket}/out")
    common = ["--epochs", "2", "--verbose", "0", "--batch_size", "16", "--cache_dir", str(tmp_path / "cache")]
    h_local = fit.run(["--data", str(local_out), "--output", str(tmp_path / "run"), *common])
    h = fit.run(["--data", f"{bucket}/out", "--output", f"{bucket}/run", *common])
    strip = [{k: v for k, v in e.items() if k != "seconds"} for e in h]
    assert strip == [{k: v for k, v in e.items() if k != "seconds"} for e in h_local]
    run_files = set(remote_tree(f"{bucket}/run"))
    assert {"model.keras", "history.json", "state.json", "report.png"} <= run_files
    tested = [e["test"] for e in json.loads(storage.read_bytes(f"{bucket}/run/history.json")) if "test" in e]
    assert tested == [e["test"] for e in h_local if "test" in e] and len(tested) == 1

    e_local = evaluate.run(["--run", str(tmp_path / "run"), "--data", str(local_out), "--split", "test"])
    e = evaluate.run(["--run", f"{bucket}/run", "--data", f"{bucket}/out", "--split", "test",
                      "--cache_dir", str(tmp_path / "cache")])
    assert e["macro_f1"] == e_local["macro_f1"] and e["confusion"] == e_local["confusion"]
    assert storage.exists(f"{bucket}/run/eval-test.json")

    flags = ["--feature_column", "features", "--label_column", "label_text"]
    p_local = predict.run(["--run", str(tmp_path / "run"), "--input", str(local_out / "parquet" / "test"),
                           "--output", str(tmp_path / "preds.parquet"), *flags])
    p = predict.run(["--run", f"{bucket}/run", "--input", f"{bucket}/out/parquet/test",
                     "--output", f"{bucket}/preds.parquet", "--cache_dir", str(tmp_path / "cache"), *flags])
    assert p["records"] == p_local["records"] > 0 and p["report"] == p_local["report"]
    import io

    import pyarrow.parquet as pq

    got = pq.read_table(io.BytesIO(storage.read_bytes(f"{bucket}/preds.parquet"))).drop_columns(["source"])
    assert got.equals(pq.read_table(tmp_path / "preds.parquet").drop_columns(["source"]))
    assert storage.exists(f"{bucket}/preds.rejected.jsonl")  # empty: none rejected (an empty S3 object)

    # a resume from the object store continues the same run
    h3 = fit.run(["--data", f"{bucket}/out", "--output", f"{bucket}/run", *common[:0], "--epochs", "3",
                  "--verbose", "0", "--batch_size", "16", "--cache_dir", str(tmp_path / "cache2"), "--resume"])
    assert len(h3) == 3 and len(json.loads(storage.read_bytes(f"{bucket}/run/history.json"))) == 3
    # evaluate from the first cache (which still holds the 2-epoch run) uploads only what it wrote
    evaluate.run(["--run", f"{bucket}/run", "--data", f"{bucket}/out", "--split", "val",
                  "--cache_dir", str(tmp_path / "cache")])
    assert len(json.loads(storage.read_bytes(f"{bucket}/run/history.json"))) == 3
    assert json.loads(storage.read_bytes(f"{bucket}/run/state.json"))["epoch"] == 3
