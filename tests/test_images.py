"""Image corpora: folder, TFRecord and Parquet inputs; bad images; bytes kept unchanged."""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import IMAGE_SIZES, bad_images, corpus_blobs, png, read_manifest, run_job, write_folder
from PIL import Image

from pipelines.inputs import image_reading
from transforms import images


def sha(b: bytes) -> str:
    return hashlib.sha1(b).hexdigest()


def shard_images(out, m, split="train"):
    paths = ([s["path"] for c in m["classes"] for s in c["shards"]["parquet"]] if split == "train"
             else [s["path"] for s in m["val"]["shards"]["parquet"]])
    return pa.concat_tables([pq.read_table(os.path.join(out, p)) for p in paths])


def test_image_folder_end_to_end_bytes_unchanged(tmp_path):
    blobs = corpus_blobs()
    folder = write_folder(tmp_path / "imgs", blobs)
    m = run_job(folder, tmp_path / "out", "--input_format", "images", "--clusters_per_class", "2",
                "--keep_embeddings")
    assert m["payload"] == {"kind": "image", "cluster_on": "thumbnail", "vector_dim": 256, "embedding": 256}
    assert {c["label"]: c["input"] for c in m["classes"]} == IMAGE_SIZES
    assert len({c["output"] for c in m["classes"]}) == 1
    train = shard_images(str(tmp_path / "out"), m)
    src = {sha(b): label for label, _, b in blobs}
    for b, label, fmt in zip(train.column("image").to_pylist(), train.column("label_text").to_pylist(),
                             train.column("format").to_pylist(), strict=True):
        assert src[sha(b)] == label and fmt == "png"  # the very bytes that were read
    assert train.schema.field("embedding").type == pa.list_(pa.float32(), 256)
    # TFRecord holds the same bytes under image/encoded
    tf = pytest.importorskip("tensorflow")
    path = os.path.join(tmp_path, "out", m["classes"][2]["shards"]["tfrecord"][0]["path"])
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/format": tf.io.FixedLenFeature([], tf.string),
            "embedding": tf.io.FixedLenFeature([256], tf.float32)}
    for rec in tf.data.TFRecordDataset(path, compression_type="GZIP").batch(100):
        parsed = tf.io.parse_example(rec, spec)
        assert all(src[sha(b)] == "eel" for b in parsed["image/encoded"].numpy())
        assert set(parsed["image/format"].numpy()) == {b"png"}


def test_bad_images_rejected_with_reasons_odd_modes_accepted(tmp_path):
    blobs = corpus_blobs() + [("dog", name, data) for name, data, _ in bad_images()]
    folder = write_folder(tmp_path / "imgs", blobs)
    rng = np.random.default_rng(3)
    skipped = [("dog", "scan.tiff", png(rng, fmt="TIFF")), ("dog", "pic.webp", png(rng, fmt="WEBP")),
               ("dog", "README.txt", b"not an image"), ("eel", ".DS_Store", b"\0\0\0\1Bud1")]
    write_folder(folder, skipped)  # not in Keras's list of extensions: rejected unread (hidden: skipped)
    m = run_job(folder, tmp_path / "out", "--input_format", "images", "--max_pixels", "100000",
                "--clusters_per_class", "2", "--output_format", "parquet")
    lines = [json.loads(x) for f in glob.glob(str(tmp_path / "out/rejected/*.jsonl")) for x in open(f)]
    got = {os.path.basename(x["source"]): x["reason"] for x in lines}
    for name in ("scan.tiff", "pic.webp", "README.txt"):
        assert got.pop(name).startswith(f"not read: {os.path.splitext(name)[1]} is not one of the image extensions")
    assert ".DS_Store" not in got
    for name, _, fragment in bad_images():
        if fragment is None:
            assert name not in got, (name, got.get(name))
        else:
            assert fragment in got[name], (name, got.get(name))
    accepted = sum(1 for _, _, f in bad_images() if f is None)
    t = m["totals"]
    assert t["rejected"] == len(bad_images()) - accepted + 3
    assert t["read"] == len(blobs) + 3 == t["rejected"] + t["holdout"] + t["train_input"]
    assert {c["label"]: c["input"] for c in m["classes"]}["dog"] == IMAGE_SIZES["dog"] + accepted


def test_images_in_parquet_and_tfrecord(tmp_path):
    tf = pytest.importorskip("tensorflow")
    blobs = corpus_blobs(seed=1)
    pq.write_table(pa.table({"label": [b[0] for b in blobs], "jpeg": pa.array([b[2] for b in blobs], pa.binary())}),
                   tmp_path / "imgs.parquet", row_group_size=7)
    m1 = run_job(str(tmp_path / "imgs.parquet"), tmp_path / "o1", "--image_column", "jpeg",
                 "--clusters_per_class", "2", "--output_format", "parquet")
    with tf.io.TFRecordWriter(str(tmp_path / "imgs.tfrecord")) as w:
        for label, _, data in blobs:
            w.write(tf.train.Example(features=tf.train.Features(feature={
                "label": tf.train.Feature(bytes_list=tf.train.BytesList(value=[label.encode()])),
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
            })).SerializeToString())
    m2 = run_job(str(tmp_path / "imgs.tfrecord"), tmp_path / "o2", "--image_column", "image/encoded",
                 "--clusters_per_class", "2", "--output_format", "parquet")
    a = sorted(zip(*(shard_images(str(tmp_path / "o1"), m1).column(c).to_pylist() for c in ("id", "cluster")), strict=True))
    b = sorted(zip(*(shard_images(str(tmp_path / "o2"), m2).column(c).to_pylist() for c in ("id", "cluster")), strict=True))
    assert a == b and len(a) == sum(c["output"] for c in m1["classes"])  # same records, any container


def test_thumbnails_are_deterministic_and_normalised():
    rng = np.random.default_rng(0)
    blobs = np.array([png(rng, 40), png(rng, 40, fmt="JPEG")], dtype=object)
    a, fa, ra = images.thumbnail_vectors(blobs, 10**6, 8, False)
    b, _, _ = images.thumbnail_vectors(blobs[::-1].copy(), 10**6, 8, False)
    assert np.array_equal(a, b[::-1]) and a.shape == (2, 64)
    assert fa.tolist() == ["png", "jpeg"] and ra.tolist() == [None, None]
    assert 0 <= a.min() and a.max() <= 1
    c, _, _ = images.thumbnail_vectors(blobs, 10**6, 4, True)
    assert c.shape == (2, 48)


def test_inception_v3_embeddings_with_random_weights(tmp_path):
    pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    blobs = [(label, f"{label}-{i}.png", png(rng, 75, shade=80 * ci))
             for ci, label in enumerate(["a", "b"]) for i in range(3 + 3 * ci)]
    folder = write_folder(tmp_path / "imgs", blobs)
    m = run_job(folder, tmp_path / "out", "--input_format", "images", "--cluster_on", "inception_v3",
                "--embedding_weights", "none", "--embedding_image_size", "75", "--clusters_per_class", "2",
                "--keep_embeddings", "--output_format", "parquet", "--holdout_fraction", "0")
    assert m["payload"]["cluster_on"] == "inception_v3" and m["payload"]["vector_dim"] == 2048
    train = shard_images(str(tmp_path / "out"), m)
    x = np.asarray(train.column("embedding").to_pylist(), np.float32)
    assert x.shape[1] == 2048 and np.isfinite(x).all() and x.std() > 0
    assert read_manifest(tmp_path / "out")["totals"]["read"] == 9


def test_imagenet_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("keras")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # no cached weights

    try:
        image_reading.check_embedding_weights("imagenet")
    except ValueError as e:
        assert "--embedding_weights /path/to/" in str(e)
    else:
        pytest.skip("this machine reached the network and fetched the weights")
    with pytest.raises(ValueError, match="no such file"):
        image_reading.check_embedding_weights(str(tmp_path / "missing.h5"))


def test_large_images_decode_on_threads_with_the_same_results(monkeypatch):
    """Batches of large images are decoded on threads; vectors, formats and reasons are as on one thread."""
    rng = np.random.default_rng(3)
    blobs = []
    for i in range(7):
        arr = rng.integers(0, 256, (160, 200, 3), dtype=np.uint8)  # 32,000 pixels: over THREADED_PIXELS
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG" if i % 2 else "PNG")
        blobs.append(buf.getvalue())
    blobs[3] = blobs[3][: len(blobs[3]) // 2]  # truncated: rejected with its reason on either path
    blobs.append(b"")
    one = images.thumbnail_vectors(blobs, images.DEFAULT_MAX_PIXELS, 16, True)
    calls, real = [], images.load_rgb

    def recorded(*args):
        calls.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(images, "load_rgb", recorded)
    with ThreadPoolExecutor(3, thread_name_prefix="decode") as threads:
        many = images.thumbnail_vectors(blobs, images.DEFAULT_MAX_PIXELS, 16, True, threads)
    assert any(name.startswith("decode") for name in calls)  # the threaded path ran
    np.testing.assert_array_equal(one[0], many[0])
    assert list(one[1]) == list(many[1]) and list(one[2]) == list(many[2])
    assert one[2][3].startswith("truncated") and one[2][7] == "empty file (0 bytes)"
    assert one[0][0].any() and not one[0][3].any()


def test_decoding_and_fitting_on_processes_gives_the_same_output(tmp_path, monkeypatch):
    """Pass 1 (a unit of images at a time: read, checked, decoded, cached), the later passes
    the merges and the k-means fits on the job's processes write the same
    records and rejections as in-process."""
    from pipelines import parallel

    started, real = [], parallel.start

    def recorded(processes, fits=False):
        started.append((processes, fits))
        real(processes, fits)

    monkeypatch.setattr(parallel, "start", recorded)
    blobs = corpus_blobs() + [("dog", name, data) for name, data, _ in bad_images()]
    folder = write_folder(tmp_path / "imgs", blobs)
    runs = {}
    for processes in ("0", "2"):
        out = tmp_path / f"out{processes}"
        m = run_job(folder, out, "--input_format", "images", "--max_pixels", "100000", "--clusters_per_class", "2",
                    "--output_format", "parquet", "--image_batch_size", "4", "--processes", processes)
        lines = [json.loads(x) for f in glob.glob(str(out / "rejected/*.jsonl")) for x in open(f)]
        runs[processes] = (m["totals"], [c["clusters"] for c in m["classes"]],
                           sorted((os.path.basename(x["source"]), x["reason"]) for x in lines),
                           sorted(zip(*(shard_images(str(out), m).column(c).to_pylist() for c in ("id", "cluster")),
                                      strict=True)))
    assert started == [(0, True), (2, True)]  # none for the first run, two for the second
    assert runs["0"] == runs["2"]
    assert runs["2"][0]["rejected"] == sum(1 for *_, f in bad_images() if f) and runs["2"][3]
