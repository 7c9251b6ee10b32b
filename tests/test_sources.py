"""The corpus readers without Beam, on small files in a tmp folder, through the read contract
of transforms/sources.py (units, `read_unit`): Parquet (vectors, one number per column,
images) and CSV (transforms/columnar_readers.py), TFRecord (vectors, images, gzip;
transforms/tfrecord_source.py), and image folders (transforms/image_folders.py). Each
reader gives raw batches: source, row, id, label and the payload."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transforms import image_folders, records, sources
from transforms.columnar_readers import schema_dim
from transforms.sources import ReadSpec, UnreadableFile


def read_all(spec: ReadSpec, path: str) -> list[dict]:
    return [raw for unit in sources.list_units(path, spec.input_format) for raw in sources.read_unit(unit, spec)]


def vectors(raw) -> list:
    """The raw batch's vectors as lists (None where missing)."""
    starts = np.concatenate([[0], np.cumsum(np.maximum(raw["lengths"], 0))])
    return [None if n < 0 else raw["values"][a:a + n].tolist() for a, n in zip(starts, raw["lengths"], strict=False)]


# ---------------------------------------------------------------- Parquet

def write_parquet(path, n=10, row_group=4, with_id=True):
    cols = {"label": [f"c{i % 3}" for i in range(n)], "features": [[float(i), -float(i)] for i in range(n)]}
    if with_id:
        cols["id"] = [f"r{i}" for i in range(n)]
    pq.write_table(pa.table(cols), path, row_group_size=row_group)
    return str(path)


def test_parquet_units_are_row_groups_read_in_batches(tmp_path):
    path = write_parquet(tmp_path / "x.parquet")
    assert sources.list_units(path, "parquet") == [(path, 0, 0), (path, 1, 4), (path, 2, 8)]
    spec = ReadSpec(input=path, input_format="parquet", batch_size=3)
    raws = read_all(spec, path)
    assert [len(r["row"]) for r in raws] == [3, 1, 3, 1, 2]  # a batch never spans row groups
    raw = records.concat([{k: r[k] for k in ("row", "id", "label")} for r in raws])
    assert raw["row"].tolist() == list(range(10))
    assert list(raw["id"]) == [f"r{i}" for i in range(10)] and list(raw["label"]) == [f"c{i % 3}" for i in range(10)]
    assert [v for r in raws for v in vectors(r)] == [[float(i), -float(i)] for i in range(10)]
    assert {r["source"] for r in raws} == {path} and all(r["errors"] is None for r in raws)
    assert schema_dim(spec) is None  # a list column of any length: the corpus's most common one


def test_parquet_without_an_id_column_and_with_one_number_per_column(tmp_path):
    path = str(tmp_path / "x.parquet")
    pq.write_table(pa.table({"y": ["a", "b", None], "f1": [1.0, None, 3.0], "f2": [4, 5, 6]}), path)
    spec = ReadSpec(input=path, input_format="parquet", label_column="y", feature_columns=("f1", "f2"))
    (raw,) = read_all(spec, path)
    assert raw["id"] is None and list(raw["label"]) == ["a", "b", None]
    assert raw["lengths"].tolist() == [2, 2, 2] and raw["values"][[0, 1, 4, 5]].tolist() == [1, 4, 3, 6]
    assert raw["errors"][0] is None and raw["errors"][1] is not None  # the missing number, named
    assert schema_dim(spec) == 2


def test_parquet_without_its_columns_is_unreadable_naming_the_file_and_flag(tmp_path):
    path = write_parquet(tmp_path / "x.parquet")
    with pytest.raises(UnreadableFile, match=r"x.parquet has no column 'vec' .*set --feature_column"):
        read_all(ReadSpec(input=path, input_format="parquet", feature_column="vec"), path)
    with pytest.raises(UnreadableFile, match="column 'id' is string, not a list of numbers"):
        read_all(ReadSpec(input=path, input_format="parquet", feature_column="id"), path)
    with pytest.raises(ValueError, match="has no column 'vec'"):
        schema_dim(ReadSpec(input=path, input_format="parquet", feature_column="vec"))


def test_a_damaged_parquet_file_is_one_unit_that_fails_naming_it(tmp_path):
    path = str(tmp_path / "bad.parquet")
    with open(path, "wb") as f:
        f.write(b"PAR1 not really parquet")
    assert sources.list_units(path, "parquet") == [(path, -2, 0)]
    with pytest.raises(UnreadableFile, match=r"cannot read .*bad.parquet"):
        read_all(ReadSpec(input=path, input_format="parquet"), path)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(UnreadableFile, match=r"empty.csv is empty \(0 bytes\)"):
        read_all(ReadSpec(input=str(empty), input_format="csv"), str(empty))


def test_parquet_images_by_image_column(tmp_path):
    path = str(tmp_path / "imgs.parquet")
    pq.write_table(pa.table({"label": ["a", "b", "a"], "img": [b"\x01\x02", None, b"\x03"]}), path, row_group_size=2)
    spec = ReadSpec(input=path, input_format="parquet", image_column="img", image_batch_size=1)
    raws = read_all(spec, path)
    assert spec.payload == "image" and [r["row"].tolist() for r in raws] == [[0], [1], [2]]
    assert [r["image"][0] for r in raws] == [b"\x01\x02", b"", b"\x03"]  # a missing image: b"", rejected later
    assert [r["label"][0] for r in raws] == ["a", "b", "a"]


# ---------------------------------------------------------------- CSV

def test_csv_reads_every_column_but_label_and_id_as_features_and_reports_ragged_rows(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("id,label,x,y\nr0,a,1,2\nr1,b,3\nr2,a,5,oops\nr3,b,7,8\n")
    spec = ReadSpec(input=str(path), input_format="csv", batch_size=2)
    raws = read_all(spec, str(path))
    assert sources.list_units(str(path), "csv") == [(str(path), -1, 0)]
    rows = [r for r in raws if r["id"] is not None]
    ragged = [r for r in raws if r["id"] is None]
    assert [r["row"].tolist() for r in rows] == [[0, 1], [2]]
    assert [list(r["id"]) for r in rows] == [["r0", "r2"], ["r3"]]
    assert vectors(rows[0])[0] == [1, 2] and vectors(rows[1]) == [[7, 8]]
    assert rows[0]["errors"][0] is None and "oops" in str(rows[0]["errors"][1])
    (bad,) = ragged
    # (its row number is the line's, header counted: 2; the valid rows after it are numbered
    # as parsed, r3 as 2 as well)
    assert len(bad["row"]) == 1 and list(bad["errors"]) == ["row has 3 fields, expected 4"]
    assert bad["label"][0] is None and bad["lengths"].tolist() == [-1]
    assert schema_dim(spec) == 2


def test_csv_without_the_label_column_is_unreadable(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("name,x\na,1\n")
    with pytest.raises(UnreadableFile, match="has no column 'label'.*--label_column"):
        read_all(ReadSpec(input=str(path), input_format="csv"), str(path))


# ---------------------------------------------------------------- TFRecord

def tf_examples(rows):
    """Serialized tf.train.Examples from dicts of feature -> bytes, int or list of floats."""
    tf = pytest.importorskip("tensorflow")

    def feature(v):
        if isinstance(v, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
        if isinstance(v, int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
        return tf.train.Feature(float_list=tf.train.FloatList(value=v))

    return [tf.train.Example(features=tf.train.Features(feature={k: feature(v) for k, v in r.items()}))
            .SerializeToString() for r in rows]


def write_tfrecord(path, serialized, gzipped=False):
    from transforms.example_codec import tfrecord_frames

    data = tfrecord_frames(serialized)
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if gzipped else data)
    return str(path)


def test_tfrecord_vectors_plain_and_gzipped(tmp_path):
    rows = [{"id": b"r0", "label": b"cat", "features": [1.0, 2.0]},
            {"id": b"r1", "label": b"dog", "features": [3.0]},
            {"label": b"cat"},  # no vector: rejected later as missing
            {"id": b"r3", "label": b"dog", "features": [4.0, 5.0]}]
    serialized = tf_examples(rows)
    for name, gz in (("x.tfrecord", False), ("x.tfrecord.gz", True)):
        path = write_tfrecord(tmp_path / name, serialized, gz)
        spec = ReadSpec(input=path, input_format="tfrecord", batch_size=3)
        raws = read_all(spec, path)
        assert [r["row"].tolist() for r in raws] == [[0, 1, 2], [3]]
        raw = records.concat([{k: r[k] for k in ("id", "label", "lengths")} for r in raws])
        assert list(raw["id"]) == ["r0", "r1", None, "r3"] and list(raw["label"]) == ["cat", "dog", "cat", "dog"]
        assert raw["lengths"].tolist() == [2, 1, 0, 2]
        assert np.concatenate([r["values"] for r in raws]).tolist() == [1, 2, 3, 4, 5]


def test_tfrecord_integer_labels_and_a_damaged_file(tmp_path):
    path = write_tfrecord(tmp_path / "x.tfrecord", tf_examples([{"label": 7, "features": [1.0]}] * 3))
    (raw,) = read_all(ReadSpec(input=path, input_format="tfrecord"), path)
    assert list(raw["label"]) == ["7", "7", "7"] and raw["id"] is None
    data = open(path, "rb").read()
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(data[:-5])
    with pytest.raises(UnreadableFile, match="cut.tfrecord"):
        read_all(ReadSpec(input=str(cut), input_format="tfrecord"), str(cut))
    with pytest.raises(UnreadableFile, match="has no column 'features'"):
        read_all(ReadSpec(input=path, input_format="tfrecord", label_column="label", feature_column="features",
                          id_column="id", image_column=None, feature_columns=()), write_tfrecord(
            tmp_path / "other.tfrecord", tf_examples([{"label": b"a", "vec": [1.0]}])))


def test_tfrecord_images(tmp_path):
    rows = [{"label": b"a", "image/encoded": b"\x89PNG one"}, {"label": b"b", "image/encoded": b"\xff\xd8two"},
            {"label": b"a", "id": b"i2", "image/encoded": b"three"}]
    path = write_tfrecord(tmp_path / "x.tfrecord", tf_examples(rows))
    spec = ReadSpec(input=path, input_format="tfrecord", image_column="image/encoded", image_batch_size=2)
    raws = read_all(spec, path)
    assert [r["row"].tolist() for r in raws] == [[0, 1], [2]]
    assert [b for r in raws for b in r["image"]] == [b"\x89PNG one", b"\xff\xd8two", b"three"]
    assert [x for r in raws for x in r["label"]] == ["a", "b", "a"]


# ---------------------------------------------------------------- image folders

def test_image_folders_list_classes_and_files_as_keras_does(tmp_path):
    root = tmp_path / "imgs"
    files = {"cat/1.png": b"c1", "cat/sub/2.JPG": b"c2", "cat/notes.txt": b"t", "cat/.DS_Store": b"h",
             "dog/3.gif": b"d3", ".hidden/4.png": b"h4", "loose.png": b"l"}
    for name, data in files.items():
        os.makedirs(root / os.path.dirname(name), exist_ok=True)
        (root / name).write_bytes(data)
    (root / "empty").mkdir()
    classes = image_folders.class_folders(str(root) + "/")
    assert classes == [(label, str(root / label)) for label in ("cat", "dog", "empty")]
    assert image_folders.empty_class_folders(str(root)) == ["empty"]
    listed = image_folders.class_images("cat", str(root / "cat"))
    assert listed == [("cat", str(root / p)) for p in ("cat/1.png", "cat/notes.txt", "cat/sub/2.JPG")]
    raw = image_folders.read_image_files(listed + image_folders.class_images("dog", str(root / "dog")))
    assert list(raw["image"]) == [b"c1", b"", b"c2", b"d3"] and list(raw["label"]) == ["cat", "cat", "cat", "dog"]
    assert raw["errors"][0] is None and raw["errors"][2] is None and raw["errors"][3] is None
    assert raw["errors"][1].startswith("not read: .txt is not one of the image extensions")
    assert raw["row"].tolist() == [-1] * 4 and raw["id"] is None
    assert sources.resolve_input(str(root) + "/", "images") == (str(root), "images")


def test_an_image_file_that_cannot_be_read_is_one_rejected_row(tmp_path):
    raw = image_folders.read_image_files([("cat", str(tmp_path / "gone.png"))])
    assert list(raw["image"]) == [b""] and raw["errors"][0].startswith("cannot read the file (")


# ---------------------------------------------------------------- input patterns

def test_input_folders_become_patterns_of_their_format(tmp_path):
    write_parquet(tmp_path / "a.parquet")
    os.makedirs(tmp_path / "sub")
    write_parquet(tmp_path / "sub" / "b.parquet")
    pattern, fmt = sources.resolve_input(str(tmp_path), None)
    assert fmt == "parquet" and sorted(map(os.path.basename, sources.storage.match(pattern))) == ["a.parquet",
                                                                                                 "b.parquet"]
    assert sources.guess_format("gs://b/x.TFRecord.gz") == "tfrecord"
    with pytest.raises(ValueError, match="Cannot tell the format of --input 'x.bin'"):
        sources.guess_format("x.bin")
    with pytest.raises(ValueError, match="matches no csv file"):
        sources.resolve_input(str(tmp_path / "*.csv"), None)
