"""The output read by the tools users reach for, and image folders as Keras lays them out.

- Parquet: pyarrow.dataset, pandas.read_parquet and DuckDB read OUT/parquet/train as one
  Hive-partitioned dataset (partition column `class`, the `label` column in the files),
  with `--output_format parquet` and with the default `both` (one tree per format).
- TFRecord: plain tf.data + tf.io.parse_example with a spec built from the manifest.
- Image folders: the job reads exactly the files keras.utils.image_dataset_from_directory
  indexes (extensions in any letter case, nested sub-folders, other files ignored).
"""

from __future__ import annotations

import collections
import glob
import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from helpers import read_manifest, run_job, write_parquet_corpus

# Integer labels (digits are a common class name; "007" keeps its leading zero) in the
# default `both` layout; names that must be made safe for a path (two of them collide)
# in the Parquet-only layout.
NUMERIC = {"0": 150, "1": 50, "10": 20, "007": 10}
NAMED = {"cat": 120, "snow leopard": 30, "snow_leopard": 12, "Öl": 6}

# The partition key pinned to a string: left to infer, pyarrow reads `class=007` as int32 7.
CLASS_STRING = ds.partitioning(pa.schema([("class", pa.string())]), flavor="hive")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("interop")
    runs = {}
    for name, sizes, fmt in (("both", NUMERIC, "both"), ("parquet", NAMED, "parquet")):
        corpus = write_parquet_corpus(str(root / f"corpus-{name}"), sizes=sizes, bad=False, dim=5)
        out = str(root / f"out-{name}")
        run_job(corpus, out, "--output_format", fmt, "--num_shards", "2", "--clusters_per_class", "2")
        runs[name] = (out, read_manifest(out))
    assert runs["both"][1]["formats"] == ["parquet", "tfrecord"]
    assert runs["parquet"][1]["formats"] == ["parquet"]
    return runs


def partition_value(c: dict) -> str:
    assert c["dir"].startswith("class=")
    return c["dir"][len("class="):]


def expected_train(m: dict) -> dict:
    """Partition value -> records written, from the manifest."""
    return {partition_value(c): c["output"] for c in m["classes"]}


def expected_val(m: dict) -> dict:
    return {c["label"]: c["holdout"] for c in m["classes"] if c["holdout"]}


def check_rows(m: dict, classes, labels, label_texts) -> None:
    """Each row's partition value, `label` (index) and `label_text` name the same manifest class."""
    by_dir = {partition_value(c): c for c in m["classes"]}
    seen = collections.Counter()
    for cls, label, text in zip(classes, labels, label_texts, strict=True):
        c = by_dir[cls]
        assert (label, text) == (c["index"], c["label"]), (cls, label, text)
        seen[cls] += 1
    assert dict(seen) == expected_train(m)


def check_table(m: dict, table: pa.Table) -> None:
    assert table.schema.field("class").type == pa.string()
    assert table.schema.field("label").type == pa.int64()
    check_rows(m, *(table.column(k).to_pylist() for k in ("class", "label", "label_text")))


def manifest_files(out: str, m: dict) -> list[str]:
    return [os.path.join(out, s["path"]) for c in m["classes"] for s in c["shards"]["parquet"]]


def val_counts(labels) -> dict:
    return dict(collections.Counter(labels))


# ---------------------------------------------------------------- pyarrow.dataset


@pytest.mark.parametrize("which", ["parquet", "both"])
def test_pyarrow_dataset_reads_the_folder(outputs, which):
    out, m = outputs[which]
    train = os.path.join(out, "parquet", "train")
    check_table(m, ds.dataset(train, format="parquet", partitioning=CLASS_STRING).to_table())
    check_table(m, ds.dataset(manifest_files(out, m), format="parquet", partitioning=CLASS_STRING,
                              partition_base_dir=train).to_table())
    if which == "parquet":
        check_table(m, ds.dataset(train, format="parquet", partitioning="hive").to_table())
        assert {partition_value(c) for c in m["classes"]} == {"cat", "snow_leopard", "snow_leopard~2", "Öl"}
    else:  # left to infer, the integer-looking folders become int32 and class=007 becomes 7
        inferred = ds.dataset(train, format="parquet", partitioning="hive").to_table(columns=["class"])
        assert inferred.schema.field("class").type == pa.int32()
        assert sorted(set(inferred.column("class").to_pylist())) == [0, 1, 7, 10]
        assert inferred.num_rows == m["totals"]["output"]
    val = ds.dataset(os.path.join(out, "parquet", "val"), format="parquet").to_table()
    assert val.num_rows == m["val"]["records"]
    assert val_counts(val.column("label_text").to_pylist()) == expected_val(m)


# ---------------------------------------------------------------- pandas


def check_frame(m: dict, df) -> None:
    check_rows(m, df["class"].astype(str).tolist(), df["label"].tolist(), df["label_text"].tolist())


@pytest.mark.parametrize("which", ["parquet", "both"])
def test_pandas_reads_the_folder(outputs, which):
    pd = pytest.importorskip("pandas")
    out, m = outputs[which]
    train = os.path.join(out, "parquet", "train")
    df = pd.read_parquet(train)
    assert isinstance(df["class"].dtype, pd.CategoricalDtype)
    assert len(df) == m["totals"]["output"]
    check_frame(m, pd.read_parquet(train, partitioning=CLASS_STRING))
    check_frame(m, pd.read_parquet(manifest_files(out, m), partitioning=CLASS_STRING))
    if which == "parquet":
        check_frame(m, df)
    val = pd.read_parquet(os.path.join(out, "parquet", "val"))
    assert len(val) == m["val"]["records"]
    assert val_counts(val["label_text"]) == expected_val(m)


# ---------------------------------------------------------------- DuckDB


def check_duck(m: dict, con, source: str) -> set:
    """Rows per (class, label, label_text) from DuckDB equal the manifest; returns the types of `class`."""
    rows = con.sql(f"SELECT typeof(class), class, label, label_text, count(*) FROM {source} GROUP BY ALL").fetchall()
    assert {(str(cls), label, text): n for _, cls, label, text, n in rows} == {
        (partition_value(c), c["index"], c["label"]): c["output"] for c in m["classes"]
    }
    return {r[0] for r in rows}


@pytest.mark.parametrize("which", ["parquet", "both"])
def test_duckdb(outputs, which):
    duckdb = pytest.importorskip("duckdb")
    out, m = outputs[which]
    train = os.path.join(out, "parquet", "train")
    con = duckdb.connect()
    # Hive partitioning is detected from the `class=` folders
    assert check_duck(m, con, f"read_parquet('{train}/*/*.parquet')") == {"VARCHAR"}
    assert check_duck(m, con, f"read_parquet('{train}/*/*.parquet', hive_partitioning = true, "
                              "hive_types = {'class': VARCHAR})") == {"VARCHAR"}
    assert check_duck(m, con, f"'{train}/*/*.parquet'") == {"VARCHAR"}
    # a folder: DuckDB reads the *.parquet files under it
    assert check_duck(m, con, f"read_parquet('{train}')") == {"VARCHAR"}
    files = ", ".join(f"'{p}'" for p in manifest_files(out, m))
    assert check_duck(m, con, f"read_parquet([{files}], hive_partitioning = true)") == {"VARCHAR"}
    assert check_duck(m, con, f"read_parquet('{train}/*/*')") == {"VARCHAR"}  # only Parquet in the tree
    val = dict(con.sql(f"SELECT label_text, count(*) FROM read_parquet('{out}/parquet/val/*.parquet') GROUP BY ALL").fetchall())
    assert val == expected_val(m) and sum(val.values()) == m["val"]["records"]


def test_duckdb_casts_integer_folders_unless_told(tmp_path):
    """DuckDB turns all-integer partition values into BIGINT; hive_types keeps them text."""
    duckdb = pytest.importorskip("duckdb")
    import pyarrow.parquet as pq

    for v in ("0", "1", "10"):
        os.makedirs(tmp_path / f"class={v}")
        pq.write_table(pa.table({"label_text": [v] * 2}), tmp_path / f"class={v}" / "part-00000-of-00001.parquet")
    q = "SELECT DISTINCT typeof(class) FROM read_parquet('{}/*/*.parquet'{})"
    assert duckdb.sql(q.format(tmp_path, "")).fetchall() == [("BIGINT",)]
    assert duckdb.sql(q.format(tmp_path, ", hive_types = {'class': VARCHAR}")).fetchall() == [("VARCHAR",)]


# ---------------------------------------------------------------- tf.data


def test_tfrecord_with_tf_data_equals_parquet(outputs):
    tf = pytest.importorskip("tensorflow")
    out, m = outputs["both"]
    dim = m["payload"]["dim"]
    spec = {
        "id": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "label_text": tf.io.FixedLenFeature([], tf.string),
        "cluster": tf.io.FixedLenFeature([], tf.int64),
        "features": tf.io.FixedLenFeature([dim], tf.float32),
    }

    def read_tf(paths):
        rows = []
        for batch in tf.data.TFRecordDataset(paths, compression_type="GZIP").batch(64):
            p = tf.io.parse_example(batch, spec)
            rows += zip([b.decode() for b in p["id"].numpy()], p["label"].numpy().tolist(),
                        [b.decode() for b in p["label_text"].numpy()], p["cluster"].numpy().tolist(),
                        map(tuple, p["features"].numpy().tolist()), strict=True)
        return sorted(rows)

    def read_pq(paths):
        t = ds.dataset(paths, format="parquet").to_table()
        return sorted(zip(*(t.column(k).to_pylist() for k in ("id", "label", "label_text", "cluster")),
                          map(tuple, np.asarray(t.column("features").to_pylist(), np.float32).tolist()),
                          strict=True))

    for c in m["classes"]:
        # a user's glob of the class folder, and the manifest's shard list
        by_glob = read_tf(tf.io.gfile.glob(os.path.join(out, "tfrecord", "train", c["dir"], "*.tfrecord.gz")))
        by_manifest = read_tf([os.path.join(out, s["path"]) for s in c["shards"]["tfrecord"]])
        assert by_glob == by_manifest
        assert len(by_glob) == c["output"]
        assert {(r[1], r[2]) for r in by_glob} == {(c["index"], c["label"])}
        assert by_glob == read_pq([os.path.join(out, s["path"]) for s in c["shards"]["parquet"]])
    val = read_tf([os.path.join(out, s["path"]) for s in m["val"]["shards"]["tfrecord"]])
    assert len(val) == m["val"]["records"]
    assert val == read_pq([os.path.join(out, s["path"]) for s in m["val"]["shards"]["parquet"]])


# ---------------------------------------------------------------- image folders as Keras reads them


def encoded(rng, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (8, 8, 3)).astype(np.uint8), "RGB").save(buf, format=fmt)
    return buf.getvalue()


NOT_LISTED = {"cat/README.txt": b"about the cats", "cat/pic.webp": b"RIFF....WEBP", "cat/sub/scan.tiff": b"II*\0",
              "dog/Thumbs.db": b"\xd0\xcf\x11\xe0", "dog/labels.csv": b"a,b\n"}


def keras_style_tree(root) -> None:
    """Class folders with nested sub-folders, extensions in any case, and files Keras skips."""
    rng = np.random.default_rng(7)
    fmt = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "bmp": "BMP", "gif": "GIF"}
    images = {
        "cat": [f"c{i}.png" for i in range(8)] + ["UPPER.PNG", "Mixed.Png", "sub/s0.JPG", "sub/s1.jpeg",
                                                   "sub/deeper/d0.gif", "sub/deeper/d1.GIF", ".hidden/h0.png"],
        "dog": [f"d{i}.jpg" for i in range(9)] + ["b0.bmp", "b1.BMP", "x/y/z/deep.JPEG"],
        "snow leopard": ["a/b/one.png", "a/two.jpg", "three.gif"],
    }
    for label, names in images.items():
        for name in names:
            path = os.path.join(root, label, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(encoded(rng, fmt[name.rsplit(".", 1)[1].lower()]))
    skipped = {  # not in Keras's allowlist: rejected with the reason, or skipped when hidden or classless
        **NOT_LISTED, "cat/.DS_Store": b"\0\0\0\1Bud1",
        ".git/objects/o.png": encoded(rng, "PNG"), "loose.png": encoded(rng, "PNG"),  # no class folder
    }
    # a macOS AppleDouble file: Keras indexes it (it ends in .jpg), the job reads and rejects it
    read_and_rejected = {"dog/._d0.jpg": b"\0\5\26\7\0\2\0\0Mac OS X        "}
    for rel, data in {**skipped, **read_and_rejected}.items():
        os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
    os.symlink(os.path.join(root, "dog"), os.path.join(root, "cat", "link"))  # Keras does not follow it


def test_image_folder_reads_what_keras_reads(tmp_path):
    keras = pytest.importorskip("keras")
    import hashlib
    import json

    import pyarrow.parquet as pq

    root = tmp_path / "imgs"
    keras_style_tree(str(root))
    kds = keras.utils.image_dataset_from_directory(str(root), labels="inferred", batch_size=None,
                                                   image_size=(8, 8), shuffle=False, verbose=False)
    keras_files = collections.defaultdict(set)
    for path in kds.file_paths:
        keras_files[os.path.relpath(path, root).split(os.sep, 1)[0]].add(path)
    assert {k: len(v) for k, v in keras_files.items()} == {"cat": 15, "dog": 13, "snow leopard": 3}

    out = str(tmp_path / "out")
    m = run_job(str(root), out, "--input_format", "images", "--clusters_per_class", "2",
                "--output_format", "parquet", "--holdout_fraction", "0.2")
    t = m["totals"]
    assert t["read"] == len(kds.file_paths) + len(NOT_LISTED) == t["rejected"] + t["holdout"] + t["train_input"]
    assert sorted(c["label"] for c in m["classes"]) == sorted(kds.class_names)
    rejected = [json.loads(x) for f in glob.glob(os.path.join(out, "rejected", "*.jsonl")) for x in open(f)]
    reasons = {os.path.relpath(r["source"], root): (r["label"], r["reason"]) for r in rejected}
    assert set(reasons) == {"dog/._d0.jpg", *NOT_LISTED}
    assert reasons["dog/._d0.jpg"][0] == "dog" and "not an image" in reasons["dog/._d0.jpg"][1]
    for rel in NOT_LISTED:
        ext = os.path.splitext(rel)[1]
        assert reasons[rel] == (rel.split("/")[0], f"not read: {ext} is not one of the image extensions "
                                "keras.utils.image_dataset_from_directory reads (.bmp .gif .jpeg .jpg .png)")
    by_label = m["rejected"].get("by_label", {})
    for c in m["classes"]:  # Keras's images, plus the files it would drop, each counted once
        extra = sum(1 for rel in NOT_LISTED if rel.split("/")[0] == c["label"])
        assert c["input"] + by_label.get(c["label"], 0) == len(keras_files[c["label"]]) + extra
    # the very files Keras lists (bar the rejected one) are in the output, under their class
    digest = {hashlib.sha1(open(p, "rb").read()).hexdigest(): label
              for label, paths in keras_files.items() for p in paths if not p.endswith("._d0.jpg")}
    shards = [s["path"] for c in m["classes"] for s in c["shards"]["parquet"]]
    shards += [s["path"] for s in m["val"]["shards"]["parquet"]]
    table = pa.concat_tables([pq.read_table(os.path.join(out, p), columns=["image", "label_text"]) for p in shards])
    written = {hashlib.sha1(b).hexdigest(): label for b, label in
               zip(table.column("image").to_pylist(), table.column("label_text").to_pylist(), strict=True)}
    assert written == digest
