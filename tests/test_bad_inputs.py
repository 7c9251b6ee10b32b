"""A generated corpus of bad inputs, in every vector format: each bad record lands in
rejected/ with a reason a person understands, each unreadable file fails the job naming
it or (with --reject_unreadable_files) is rejected whole and counted, and
read = rejected + held out + train input, always. Bad images: tests/test_images.py.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_vectors, run_job, train_records

from transforms.example_codec import tfrecord_frames

DIM = 4
SIZES = {"a": 150, "b": 40, "c": 12}
GOOD = sum(SIZES.values())

# (label, features, reason fragment): bad records every format can hold
BAD_RECORDS = [
    ("a", [float("nan")] * DIM, "NaN"),
    ("b", [1.0, float("inf"), 0.0, 0.0], "inf"),
    ("b", [1.0] * (DIM - 1), f"has {DIM - 1} values, expected {DIM}"),
    (None, [0.0] * DIM, "label is missing"),
    ("", [0.0] * DIM, "label is empty"),
    ("c", [], "has 0 values, expected 4"),
    ("c", None, "features are missing"),
]
# CSV only: text where a number belongs, a missing value, rows with too few or many fields
BAD_CSV_LINES = [
    ("c,1.0,abc,0.5,0.5", "value 'abc' in column 'f1' is not a number"),
    ("c,1.0,,0.5,0.5", "missing value in column 'f1'"),
    ("a,1.0,2.0", "row has 3 fields, expected 5"),
    ("a,1,2,3,4,5,6", "row has 7 fields, expected 5"),
    ("b,nan,1,1,1", "NaN"),
]


def good_rows(seed=0):
    labels, x = make_vectors(SIZES, DIM, seed)
    return labels, [list(map(float, r)) for r in x]


def parquet_bytes(labels, feats, **kw) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"label": pa.array(labels, pa.string()),
                             "features": pa.array(feats, pa.list_(pa.float32()))}), sink, **kw)
    return sink.getvalue()


def example(label, feats) -> bytes:
    tf = pytest.importorskip("tensorflow")
    feature = {} if feats is None else {"features": tf.train.Feature(float_list=tf.train.FloatList(value=feats))}
    if label is not None:
        feature["label"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[label.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def tfrecord_bytes(labels, feats) -> bytes:
    return tfrecord_frames([example(lab, f) for lab, f in zip(labels, feats, strict=True)])


def write(folder, name, data: bytes) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def bad_corpus(root, fmt: str) -> dict[str, str]:
    """Writes root/<fmt>/: good records with the bad ones mixed in, and broken files.

    Returns {broken file name: reason fragment} for the files that cannot be read.
    """
    folder = os.path.join(root, fmt)
    labels, feats = good_rows()
    for i, (label, f, _) in enumerate(BAD_RECORDS):  # spread among the good rows
        labels.insert(17 * i + 3, label)
        feats.insert(17 * i + 3, f)
    rng = np.random.default_rng(1)
    if fmt == "parquet":
        good = parquet_bytes(labels, feats, row_group_size=50)
        write(folder, "good.parquet", good)
        write(folder, "empty.parquet", b"")
        write(folder, "truncated.parquet", good[: len(good) * 2 // 3])
        write(folder, "garbage.parquet", b"PAR1" + rng.bytes(300) + b"PAR1")
        write(folder, "no_features.parquet", pq_table_bytes({"label": ["a"], "vec": [[1.0] * DIM]}))
        # a data page damaged on disk, caught by the page checksum the writer stored
        damaged = bytearray(parquet_bytes(labels[:30], feats[:30], compression="none",
                                          write_page_checksum=True))
        damaged[len(damaged) // 3] ^= 0xFF
        write(folder, "damaged_page.parquet", bytes(damaged))
        return {"empty.parquet": "is empty (0 bytes)", "truncated.parquet": "Parquet",
                "garbage.parquet": "Parquet", "no_features.parquet": "has no column 'features'",
                "damaged_page.parquet": "checksum"}
    if fmt == "tfrecord":
        write(folder, "good.tfrecord", tfrecord_bytes(labels, feats))
        write(folder, "empty.tfrecord", b"")
        bad_crc = bytearray(tfrecord_bytes(labels[:30], feats[:30]))
        bad_crc[20] ^= 0xFF  # inside the first record: its CRC no longer matches
        write(folder, "bad_crc.tfrecord", bytes(bad_crc))
        gz = gzip.compress(tfrecord_bytes(labels[:30], feats[:30]))
        write(folder, "truncated.tfrecord.gz", gz[:30])  # cut inside the first record
        write(folder, "not_examples.tfrecord", tfrecord_frames([rng.bytes(40) for _ in range(5)]))
        return {"empty.tfrecord": "is empty (0 bytes)", "bad_crc.tfrecord": "corrupted record",
                "truncated.tfrecord.gz": "the gzip stream is damaged or cut short", "not_examples.tfrecord": "is not a tf.train.Example"}
    lines = ["label,f0,f1,f2,f3"]
    for label, f in zip(labels, feats, strict=True):
        if f is not None and len(f) == DIM:  # CSV has no ragged vectors: the wrong-length row is a ragged line
            lines.append(("" if label is None else label) + "," + ",".join(repr(v) for v in f))
    for i, (line, _) in enumerate(BAD_CSV_LINES):
        lines.insert(13 * i + 5, line)
    write(folder, "good.csv", ("\n".join(lines) + "\n").encode())
    write(folder, "empty.csv", b"")
    write(folder, "no_label.csv", b"name,f0\nx,1.0\n")
    write(folder, "binary.csv", b"label,f0\n" + bytes(range(128, 256)) * 4 + b"\n")
    return {"empty.csv": "is empty (0 bytes)", "no_label.csv": "has no column 'label'",
            "binary.csv": "CSV parse error"}


def pq_table_bytes(columns: dict) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


def rejected_entries(out) -> list[dict]:
    return [json.loads(line) for p in sorted(glob.glob(os.path.join(out, "rejected", "*.jsonl")))
            for line in open(p)]


def record_reasons(fmt: str) -> list[str]:
    if fmt == "csv":  # missing label and empty label are the same empty field in CSV
        kept = [r for lab, f, r in BAD_RECORDS if f is not None and len(f) == DIM and lab]
        return kept + ["label is missing"] * 2 + [r for _, r in BAD_CSV_LINES]
    if fmt == "tfrecord":  # parsed, an absent feature is an empty one
        return [r if f is not None else "has 0 values" for _, f, r in BAD_RECORDS]
    return [r for _, _, r in BAD_RECORDS]


@pytest.mark.parametrize("fmt", ["parquet", "tfrecord", "csv"])
def test_bad_inputs_are_rejected_with_reasons_and_counts_reconcile(tmp_path, fmt):
    broken = bad_corpus(str(tmp_path), fmt)
    folder = str(tmp_path / fmt)
    with pytest.raises(Exception, match="pass --reject_unreadable_files") as failed:
        run_job(folder, tmp_path / "strict", "--input_format", fmt)
    assert any(name in str(failed.value) for name in broken), str(failed.value)  # names the file

    m = run_job(folder, tmp_path / "out", "--input_format", fmt, "--reject_unreadable_files",
                "--output_format", "parquet", "--clusters_per_class", "2")
    entries = rejected_entries(tmp_path / "out")
    whole = {os.path.basename(e["source"]): e["reason"] for e in entries if e["row"] == -1}
    assert set(whole) == set(broken)
    for name, fragment in broken.items():
        assert name in whole[name] and fragment in whole[name], whole[name]
    reasons = sorted(e["reason"] for e in entries if e["row"] != -1)
    want = record_reasons(fmt)
    assert len(reasons) == len(want)
    for fragment in want:  # each expected reason matched by its own entry
        hit = next(r for r in reasons if fragment in r)
        reasons.remove(hit)
    t = m["totals"]
    assert t["read"] == GOOD + len(want) + len(broken)
    assert t["rejected"] == len(want) + len(broken) == len(entries)
    assert {c["label"]: c["input"] for c in m["classes"]} == SIZES


@pytest.mark.parametrize("fmt", ["tfrecord", "parquet"])
def test_a_file_damaged_part_way_keeps_what_came_before_whatever_the_batch_size(tmp_path, fmt):
    """The records before the damage are kept, the rest is one entry, for any --batch_size."""
    labels, feats = good_rows()
    if fmt == "tfrecord":
        data = bytearray(tfrecord_bytes(labels, feats))
        data[len(tfrecord_bytes(labels[:95], feats[:95])) + 14] ^= 0xFF  # inside record 96: a bad CRC
        kept, reason = 95, "corrupted record"
    else:  # one row group, pages of 10 rows: the 10th page is damaged, caught by its checksum
        data = bytearray(parquet_bytes(labels, feats, compression="none", write_page_checksum=True,
                                       data_page_size=1, write_batch_size=10))
        data[len(data) // 2] ^= 0xFF
        kept, reason = None, "checksum"
    write(str(tmp_path / "in"), f"part.{fmt}", bytes(data))
    outs = []
    for batch in ("7", "8192"):
        m = run_job(str(tmp_path / "in"), tmp_path / f"out-{batch}", "--reject_unreadable_files",
                    "--batch_size", batch, "--output_format", "parquet", "--input_format", fmt)
        [entry] = rejected_entries(tmp_path / f"out-{batch}")
        done = m["totals"]["read"] - 1
        assert entry["reason"].startswith(f"unreadable after its first {done} records (those were kept)")
        assert reason in entry["reason"]
        assert kept is None or done == kept
        assert 0 < done < GOOD and m["totals"]["rejected"] == 1
        outs.append((m["totals"], train_records(tmp_path / f"out-{batch}")))
    assert outs[0] == outs[1]  # the same records kept, whatever the batch size


def test_a_bad_value_deep_in_a_csv_rejects_its_row_only(tmp_path):
    """Arrow guesses column types from the first block; a bad value after it must not fail the file."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120_000, 2))
    lines = ["label,f0,f1"] + [f"{'ab'[i % 2]},{a:.5f},{b:.5f}" for i, (a, b) in enumerate(x)]
    lines += ["a,oops,1.0", "7,1.0,2.0"]  # past the first block: text in a number column, a number label
    (tmp_path / "big.csv").write_text("\n".join(lines) + "\n")
    m = run_job(str(tmp_path / "big.csv"), tmp_path / "out", "--clusters_per_class", "1",
                "--output_format", "parquet")
    [entry] = rejected_entries(tmp_path / "out")
    assert entry["reason"] == "value 'oops' in column 'f0' is not a number"
    assert {c["label"]: c["input"] for c in m["classes"]} == {"7": 1, "a": 60_000, "b": 60_000}
