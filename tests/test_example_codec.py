"""The vectorised Example encoder against TensorFlow's own parser and proto."""

import gzip

import numpy as np
import pyarrow as pa
import pytest

from pipelines.outputs import formats as shard_formats
from pipelines.outputs.formats import tfrecord_bytes
from transforms import example_codec

tf = pytest.importorskip("tensorflow")


def reference(ids, label, text, clusters, x):
    out = []
    for i in range(len(ids)):
        ex = tf.train.Example(features=tf.train.Features(feature={
            "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[ids[i].encode()])),
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            "label_text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()])),
            "cluster": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(clusters[i])])),
            "features": tf.train.Feature(float_list=tf.train.FloatList(value=x[i].tolist())),
        }))
        out.append(ex.SerializeToString(deterministic=True))
    return out


SPEC = {
    "id": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "label_text": tf.io.FixedLenFeature([], tf.string),
    "cluster": tf.io.FixedLenFeature([], tf.int64),
    "features": tf.io.FixedLenFeature([5], tf.float32),
}


def test_encoder_matches_tensorflow():
    rng = np.random.default_rng(0)
    ids = np.array(["a" * 16, "b" * 16, "short", "ünï", "c" * 200], dtype=object)
    clusters = np.array([0, 3, 200, -1, 7])
    x = rng.normal(size=(5, 5)).astype(np.float32)
    ours = example_codec.encode_examples(ids, 3, "cät/ 1", clusters, floats={"features": x})
    ref = reference(ids, 3, "cät/ 1", clusters, x)
    # the vectorised path (mixed layouts: id lengths, 1-, 2- and 10-byte cluster varints)
    assert example_codec.encode_tfrecords(ids, 3, "cät/ 1", clusters, floats={"features": x}) == \
        example_codec.tfrecord_frames(ours)
    for a, b in zip(ours, ref, strict=True):  # the same message (map order aside)
        assert tf.train.Example.FromString(a) == tf.train.Example.FromString(b)
    parsed = tf.io.parse_example(tf.constant(ours), SPEC)
    assert [v.decode() for v in parsed["id"].numpy()] == ids.tolist()
    assert parsed["cluster"].numpy().tolist() == clusters.tolist()
    assert np.array_equal(parsed["features"].numpy(), x)
    assert set(parsed["label"].numpy().tolist()) == {3}


@pytest.mark.parametrize("encode_rows", [16384, 7])  # one encoded part, or many
def test_tfrecord_shard_reads_back_with_tf_data(tmp_path, monkeypatch, encode_rows):
    monkeypatch.setattr(shard_formats, "ENCODE_ROWS", encode_rows)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    table = pa.table({
        "id": pa.array([f"{i:016x}" for i in range(300)]),
        "label": pa.array(np.repeat([0, 1], 150), pa.int64()),
        "label_text": pa.array(["zero"] * 150 + ["one"] * 150),
        "cluster": pa.array(np.arange(300) % 4, pa.int32()),
        "features": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 5),
    })
    path = tmp_path / "part.tfrecord.gz"
    path.write_bytes(tfrecord_bytes(table))
    assert gzip.decompress(path.read_bytes())  # a valid gzip stream
    ds = tf.data.TFRecordDataset(str(path), compression_type="GZIP").batch(1000)
    parsed = tf.io.parse_example(next(iter(ds)), SPEC)
    got = {i.decode(): (lab, t.decode(), c, f.tolist()) for i, lab, t, c, f in zip(
        parsed["id"].numpy(), parsed["label"].numpy(), parsed["label_text"].numpy(),
        parsed["cluster"].numpy(), parsed["features"].numpy(), strict=True)}
    assert len(got) == 300
    for i in (0, 151, 299):
        lab, text, c, f = got[f"{i:016x}"]
        assert (lab, text, c) == (i // 150, "zero" if i < 150 else "one", i % 4)
        assert np.array_equal(np.array(f, np.float32), x[i])
