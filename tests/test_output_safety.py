"""The job never deletes or re-reads what it did not write; one writer per OUT; any ids, any labels.

Each case is one a careless user hits in one or two commands; every test asserts on the
files on disk (input bytes still there, foreign files untouched, manifest = files).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import read_manifest, run_job, train_records, write_parquet_corpus

from pipelines.outputs import output_dir


def digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def tree(folder) -> dict[str, str]:
    """Every file under `folder` (relative path -> sha256)."""
    return {os.path.relpath(p, folder): digest(p)
            for p in glob.glob(os.path.join(folder, "**"), recursive=True) if os.path.isfile(p)}


def listed(m: dict) -> set[str]:
    return set(output_dir.listed_files(m))


# ---------------------------------------------------------------- input and output apart


def test_input_inside_output_is_refused_and_kept(tmp_path):
    ds = tmp_path / "ds"
    write_parquet_corpus(str(ds / "train"), files=1)
    before = tree(ds)
    with pytest.raises(ValueError, match=r"inside --output .*replace its own input"):
        run_job(str(ds / "train" / "part-0.parquet"), ds)
    assert tree(ds) == before  # nothing removed, nothing written


def test_output_inside_the_input_folder_is_refused(tmp_path):
    same = tmp_path / "same"
    write_parquet_corpus(str(same), files=1)
    before = tree(same)
    from pipelines import balance

    for out in (same, same / "out"):  # a folder input reads recursively: it would read the output
        with pytest.raises(ValueError, match="would read the job's own output"):
            balance.run(["--input", f"{same}/", "--output", str(out), "--runner=FnApiRunner"])
    assert tree(same) == before


def test_foreign_files_under_out_are_never_deleted(tmp_path):
    corpus = write_parquet_corpus(str(tmp_path / "corpus"))
    out = tmp_path / "out"
    first = run_job(corpus, out, "--num_shards", "3", "--output_format", "parquet")
    shard = os.path.join(out, first["classes"][0]["shards"]["parquet"][0]["path"])
    foreign = {
        "parquet/train/notes.txt": b"my notes",
        "parquet/val/x.parquet": open(shard, "rb").read(),
        "parquet/train/class=zzz/part-00000-of-00001.parquet": open(shard, "rb").read(),
        "rejected/mine.jsonl": b"{}\n",
        "notes.md": b"# mine",
    }
    for rel, data in foreign.items():
        os.makedirs(os.path.dirname(out / rel), exist_ok=True)
        (out / rel).write_bytes(data)
    second = run_job(corpus, out, "--num_shards", "1", "--output_format", "parquet")
    files = tree(out)
    for rel, data in foreign.items():  # every foreign file is still there, bytes unchanged
        assert files.get(rel) == hashlib.sha256(data).hexdigest(), rel
    # the first run's shards that the second no longer lists are gone; nothing else is left
    assert set(files) == listed(second) | set(foreign) | {"manifest.json"}
    assert listed(first) - listed(second)


def test_a_folder_that_is_not_ours_is_refused_unless_overwrite(tmp_path):
    corpus = write_parquet_corpus(str(tmp_path / "corpus"))
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"jpeg")
    with pytest.raises(ValueError, match=r"not an earlier output of this job \(it holds holiday\.jpg\).*--overwrite"):
        run_job(corpus, out)
    assert tree(out) == {"holiday.jpg": hashlib.sha256(b"jpeg").hexdigest()}
    m = run_job(corpus, out, "--overwrite", "--output_format", "parquet")
    assert set(tree(out)) == listed(m) | {"manifest.json", "holiday.jpg"}
    run_job(corpus, out, "--output_format", "parquet")  # now it is an earlier output of ours
    assert (out / "holiday.jpg").read_bytes() == b"jpeg"


# ---------------------------------------------------------------- one writer per OUT


def test_a_held_lock_stops_a_second_run_before_it_touches_anything(tmp_path):
    corpus = write_parquet_corpus(str(tmp_path / "corpus"))
    out = tmp_path / "out"
    run_job(corpus, out, "--output_format", "parquet")
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "command": "pipelines.balance", "token": "x",
              "started": "2026-11-30T07:00:00+0000"}
    (out / ".lock").write_text(json.dumps(holder))
    before = tree(out)
    with pytest.raises(output_dir.OutputInUse, match=rf"{out}/.lock is held by pipelines.balance on host .*pid {os.getpid()}"):
        run_job(corpus, out, "--output_format", "parquet", "--seed", "1")
    assert tree(out) == before  # the earlier output and its manifest are intact


def test_a_lock_whose_process_is_gone_is_taken_over(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pipelines")
    corpus = write_parquet_corpus(str(tmp_path / "corpus"))
    out = tmp_path / "out"
    out.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (out / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": gone.pid, "token": "y"}))
    m = run_job(corpus, out, "--output_format", "parquet")
    assert any("taking over" in r.getMessage() and str(gone.pid) in r.getMessage() for r in caplog.records)
    assert not (out / ".lock").exists() and m["totals"]["read"] > 0


def test_two_runs_into_one_output_at_once(tmp_path):
    corpus = write_parquet_corpus(str(tmp_path / "corpus"), sizes={"a": 30_000, "b": 4_000, "c": 400})
    out = tmp_path / "out"

    def start(seed):
        return subprocess.Popen([sys.executable, "-m", "pipelines.balance", "--input", corpus, "--output", str(out),
                                 "--runner=FnApiRunner", "--seed", str(seed), "--output_format", "parquet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    jobs = [start(0)]
    deadline = time.time() + 120
    while not (out / ".lock").exists() and jobs[0].poll() is None and time.time() < deadline:
        time.sleep(0.05)
    jobs.append(start(1))  # while the first holds the lock
    results = [(j.wait(timeout=300), j.stderr.read()) for j in jobs]
    assert [rc for rc, _ in results] == [0, 2], results[1][1][-2000:]
    seed, err = 1, results[1][1]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: {out}/.lock is held by pipelines.balance")
    m = read_manifest(out)
    assert m["seed"] == 1 - seed
    for c in m["classes"]:  # manifest = files
        assert sum(pq.read_metadata(os.path.join(out, s["path"])).num_rows for s in c["shards"]["parquet"]) \
            == c["output"]
    assert not (out / ".lock").exists()


# ---------------------------------------------------------------- ids and labels


def write_duplicate_id_corpus(folder, rows=3990, distinct=700, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice(["a", "b", "c"], size=rows, p=[0.7, 0.25, 0.05])
    x = rng.normal(size=(rows, 4)).astype(np.float32) + (labels == "b")[:, None] * 3
    ids = [f"id{v}" for v in rng.integers(0, distinct, size=rows)]
    os.makedirs(folder, exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(rows), 3)):
        pq.write_table(pa.table({"id": [ids[j] for j in part], "label": labels[part].tolist(),
                                 "features": pa.FixedSizeListArray.from_arrays(pa.array(x[part].ravel()), 4)}),
                       os.path.join(folder, f"part-{i}.parquet"), row_group_size=500)
    return os.path.join(folder, "*.parquet"), rows - len(set(ids))


def shard_bytes(out) -> dict[str, str]:
    return {k: v for k, v in tree(out).items() if k.startswith(("parquet/", "rejected/"))}


def test_duplicate_ids_give_the_same_records_and_bytes_on_any_batch_size_and_runner(tmp_path):
    corpus, repeats = write_duplicate_id_corpus(str(tmp_path / "corpus"))
    flags = ["--output_format", "parquet", "--clusters_per_class", "3", "--num_shards", "2"]
    m = run_job(corpus, tmp_path / "a", *flags)
    run_job(corpus, tmp_path / "b", *flags, "--batch_size", "7")
    run_job(corpus, tmp_path / "c", *flags, "--direct_running_mode=multi_processing", "--direct_num_workers=2",
            runner="DirectRunner")
    assert m["ids"] == {"column": "id", "duplicates": repeats} and repeats > 3000
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b") == shard_bytes(tmp_path / "c")
    assert train_records(tmp_path / "a") == train_records(tmp_path / "c")
    for c in m["classes"]:
        assert c["output"] == c["target"] == sum(x["output"] for x in c["clusters"])


def test_labels_of_any_length_fit_the_filesystem(tmp_path, capsys):
    long_a, long_b = "é" * 300, "x" * 10_000
    corpus = write_parquet_corpus(str(tmp_path / "corpus"), sizes={long_a: 40, long_b: 12, "short": 30}, bad=False)
    m = run_job(corpus, tmp_path / "out", "--clusters_per_class", "2")
    dirs = {c["label"]: c["dir"] for c in m["classes"]}
    assert len(set(dirs.values())) == 3 and dirs["short"] == "class=short"
    for label, d in dirs.items():
        assert len(d.encode()) <= output_dir_max() and d.startswith("class=")
        files = glob.glob(str(tmp_path / "out" / "parquet" / "train" / d / "*.parquet"))
        assert sum(pq.read_metadata(f).num_rows for f in files) == m["classes"][[c["label"] for c in m["classes"]].index(label)]["output"]
    assert dirs[long_a].startswith("class=éé") and "~" in dirs[long_a]
    table = capsys.readouterr().out
    assert long_b not in table and "x" * 37 + "..." in table  # messages cut the label to a readable length


def output_dir_max() -> int:
    from pipelines.outputs.layout import MAX_DIR_BYTES

    return MAX_DIR_BYTES


# ---------------------------------------------------------------- errors as promised


@pytest.mark.parametrize("module", ["pipelines.balance", "pipelines.histogram"])
def test_misspelt_flags_and_bad_values_are_one_line_and_write_nothing(tmp_path, module):
    corpus = write_parquet_corpus(str(tmp_path / "corpus"))
    cases = {
        "--holdout_fracton=0.2": "unknown flag --holdout_fracton: neither a flag of this job nor an option of an "
                                 "installed Beam runner. Did you mean --holdout_fraction?",
        "--direct_num_workrs=2": "unknown flag --direct_num_workrs: neither a flag of this job nor an option of an "
                                 "installed Beam runner. Did you mean --direct_num_workers?",
        "--seed=abc": "argument --seed: invalid int value: 'abc'",
        "--strategy=bogus": "argument --strategy: invalid choice: 'bogus'",
    }
    procs = {arg: subprocess.Popen([sys.executable, "-m", module, "--input", corpus, "--output",
                                    str(tmp_path / arg.strip("-").split("=")[0]), "--runner=FnApiRunner", arg],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for arg in cases}
    for arg, p in procs.items():
        out, err = p.communicate(timeout=300)
        assert p.returncode == 2, (arg, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {cases[arg]}"), (arg, err)
        assert not os.path.exists(tmp_path / arg.strip("-").split("=")[0])  # nothing written
    if module != "pipelines.balance":
        return
    # Beam's own flags still pass through (the histogram job parses them with the same code);
    # in-process: the command line above is the same parser, and the run takes them or raises
    m = run_job(corpus, tmp_path / "ok", "--direct_num_workers=1", "--flink_master=[auto]", "--project=p")
    assert m["totals"]["read"] > 0 and read_manifest(tmp_path / "ok") == m


def test_unknown_target_counts_label_stops_after_counting_before_kmeans(tmp_path, caplog):
    from pipelines.errors import JobError

    caplog.set_level(logging.INFO, logger="pipelines")
    corpus = write_parquet_corpus(str(tmp_path / "corpus"))
    with pytest.raises(JobError, match=r"^--target_counts names classes that are not in the corpus: \['zz'\]"):
        run_job(corpus, tmp_path / "out", "--target_counts", '{"zz": 5}')
    messages = [r.getMessage() for r in caplog.records]
    assert any(x.startswith("pass 1/4 (class counts): done") for x in messages)
    assert not any(x.startswith("pass 2/4") or "clusters fitted" in x for x in messages)


def test_empty_class_folder_is_a_warning_in_the_summary(tmp_path, capsys):
    from helpers import corpus_blobs, write_folder

    root = write_folder(tmp_path / "photos", corpus_blobs())
    os.makedirs(os.path.join(root, "ghost"))
    m = run_job(root, tmp_path / "out", "--input_format", "images", "--output_format", "parquet")
    assert [c["label"] for c in m["classes"]] == ["cat", "dog", "eel"]
    assert len(m["run"]["warnings"]) == 1 and "class folder 'ghost'" in m["run"]["warnings"][0]
    assert "warning: class folder 'ghost'" in capsys.readouterr().out
    shutil.rmtree(tmp_path / "out")


def test_ctrl_c_is_one_line_exit_130_and_the_output_is_left_as_after_a_crash(tmp_path):
    corpus = write_parquet_corpus(str(tmp_path / "corpus"), files=2, bad=False, sizes={"a": 6000, "b": 2000, "c": 300})
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.balance", "--input", corpus, "--output", str(out),
                             "--runner=FnApiRunner", "--output_format", "both"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # interrupt once the run holds OUT and pass 1 is done
        seen.append(line)
        if "pass 1/4" in line:
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, "".join(seen) + rest
    assert rest.strip().splitlines() == [f"interrupted: {out} is left incomplete (no manifest.json); re-run the "
                                         "same command to start again"], rest
    assert sorted(os.listdir(out)) == [".staging"]  # no manifest, no lock; the next run removes the staging
