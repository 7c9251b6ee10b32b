"""Builders the tests share: small generated corpora (vectors, images, valid batches), the
job run in-process, and readers of its outputs. Fixtures and pytest hooks live in conftest.py.

Test modules import from here, never from one another.
"""

from __future__ import annotations

import glob
import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SIZES = {"a": 400, "b": 120, "c": 30, "d": 8}  # imbalance ratio 50


def make_vectors(sizes=SIZES, dim=6, seed=0):
    """Labels and features with 3 Gaussian blobs per class, interleaved."""
    rng = np.random.default_rng(seed)
    labels, feats = [], []
    for ci, (label, n) in enumerate(sizes.items()):
        centres = rng.normal(0, 8, size=(3, dim)) + ci * 20
        which = rng.integers(0, 3, size=n)
        feats.append(centres[which] + rng.normal(0, 1, size=(n, dim)))
        labels += [label] * n
    x = np.concatenate(feats).astype(np.float32)
    perm = rng.permutation(len(labels))
    return [labels[i] for i in perm], x[perm]


BAD_ROWS = [  # (label, features, reason fragment)
    ("a", [float("nan")] * 6, "NaN"),
    ("b", [1.0] * 5, "has 5 values, expected 6"),
    ("", [0.0] * 6, "label is empty"),
    (None, [0.0] * 6, "label is missing"),
    ("c", [float("inf")] + [0.0] * 5, "NaN, inf"),
    ("d", None, "features are missing"),
]


def write_parquet_corpus(folder, files=2, row_group=97, bad=True, dim=6, sizes=SIZES, seed=0):
    labels, x = make_vectors(sizes, dim, seed)
    feats = [list(map(float, r)) for r in x]
    if bad:
        for label, f, _ in BAD_ROWS:
            labels.append(label)
            feats.append(f)
    os.makedirs(folder, exist_ok=True)
    n = len(labels)
    bounds = np.linspace(0, n, files + 1).astype(int)
    for i in range(files):
        sl = slice(bounds[i], bounds[i + 1])
        table = pa.table({
            "label": pa.array(labels[sl], pa.string()),
            "features": pa.array(feats[sl], pa.list_(pa.float32())),
        })
        pq.write_table(table, os.path.join(folder, f"part-{i}.parquet"), row_group_size=row_group)
    return os.path.join(folder, "*.parquet")


def valid_batches(n_per_class, dim=3, parts=4, seed=0):
    """Valid batches ({id, key, label, features}, as pass 1 caches them) of n_per_class rows,
    shuffled and cut into `parts` batches."""
    from transforms import hashing, records

    rng = np.random.default_rng(seed)
    labels = np.array([c for c, n in n_per_class.items() for _ in range(n)], dtype=object)
    x = rng.normal(size=(len(labels), dim)).astype(np.float32)
    keys = hashing.content_keys(labels, x)
    good = {"id": hashing.hex_ids(keys).astype(object), "key": keys, "label": labels, "features": x}
    return [records.take(good, s) for s in np.array_split(rng.permutation(len(labels)), parts)]


# ---------------------------------------------------------------- images

IMAGE_SIZES = {"cat": 40, "dog": 12, "eel": 5}


def png(rng, size=12, mode="RGB", fmt="PNG", shade=0) -> bytes:
    from PIL import Image

    arr = (rng.integers(0, 60, (size, size, 3)) + shade).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def corpus_blobs(seed=0, size=12):
    """(label, file name, PNG bytes) of IMAGE_SIZES images per class."""
    rng = np.random.default_rng(seed)
    out = []
    for ci, (label, n) in enumerate(IMAGE_SIZES.items()):
        for i in range(n):
            out.append((label, f"{label}-{i}.png", png(rng, size, shade=60 * ci + 40 * (i % 2))))
    return out


def bad_images():
    """(file name, bytes, reason fragment or None when the image must be accepted)."""
    from PIL import Image

    rng = np.random.default_rng(9)
    good = png(rng)
    cmyk = png(rng, mode="CMYK", fmt="JPEG")
    i16 = io.BytesIO()
    Image.fromarray((rng.integers(0, 65535, (12, 12))).astype(np.uint16)).save(i16, format="PNG")
    assert Image.open(io.BytesIO(i16.getvalue())).mode.startswith("I")
    huge = io.BytesIO()
    Image.new("L", (400, 400)).save(huge, format="PNG")
    tiff = io.BytesIO()
    Image.new("RGB", (12, 12)).save(tiff, format="TIFF")
    return [
        ("zero.png", b"", "empty file (0 bytes)"),
        ("truncated.png", good[: len(good) // 2], "truncated or corrupt"),
        ("garbage.png", b"\x89PNG not really" * 10, "not an image Pillow can read"),
        ("text.jpg", b"hello, I am text", "not an image Pillow can read"),
        ("scan.png", tiff.getvalue(), "unsupported format TIFF"),  # named .png: Keras lists no .tiff
        ("huge.png", huge.getvalue(), "over the cap of 100000"),
        ("cmyk.jpg", cmyk, None),
        ("deep.png", i16.getvalue(), None),
        ("palette.png", png(rng, mode="P"), None),
        ("alpha.png", png(rng, mode="RGBA"), None),
        ("grey.gif", png(rng, mode="L", fmt="GIF"), None),
        ("pic.bmp", png(rng, fmt="BMP"), None),
        ("webp.png", png(rng, fmt="WEBP"), None),
    ]


def write_folder(root, blobs):
    """An image-folder corpus: root/label/name for each (label, name, bytes)."""
    for label, name, data in blobs:
        os.makedirs(os.path.join(root, label), exist_ok=True)
        with open(os.path.join(root, label, name), "wb") as f:
            f.write(data)
    return str(root)


# ---------------------------------------------------------------- the job and its outputs

def run_job(input_glob, out, *extra, runner="FnApiRunner"):
    from pipelines import balance

    argv = ["--input", input_glob, "--output", str(out), f"--runner={runner}", *extra]
    return balance.run(argv)


def read_manifest(out):
    with open(os.path.join(out, "manifest.json")) as f:
        return json.load(f)


def train_records(out, fmt="parquet"):
    """All train rows as sorted (id, label_text, cluster) tuples, from the files."""
    import pyarrow.dataset as ds

    base = os.path.join(out, "parquet", "train")
    files = sorted(glob.glob(os.path.join(base, "*", "*.parquet")))  # tfrecord.gz files sit beside them
    table = ds.dataset(files, format="parquet", partitioning="hive", partition_base_dir=base).to_table(
        columns=["id", "label_text", "cluster"])
    return sorted(zip(*(table.column(c).to_pylist() for c in ("id", "label_text", "cluster")), strict=True))


def class_models(batches, rule, centroids=None) -> dict:
    """What passes 1 and 2 give pass 3 and 4 per class, without Beam: the counts (as
    ClassCounts extracts them, from counting.Summaries) and the centroids (`centroids`:
    label -> array; a class without is one cluster)."""
    from pipelines.passes.counting import Summaries

    summaries = Summaries(rule, False)
    for b in batches:
        summaries.add(b)
    models = {}
    for label, stats in summaries.stats.items():
        s = stats.extract()
        models[label] = {"count": s.count, "train": s.train, "val": s.val, "test": s.test, "max_hold": s.max_hold,
                         "bytes": s.nbytes, "centroids": (centroids or {}).get(label)}
    return models
