"""The demo corpora: scikit-learn's digits, made long-tailed: PNG folders or Parquet vectors.

Real 8x8 images of handwritten digits as 64-value vectors. Class c keeps
round(n_max * ratio**(-c/9)) records (digit 0 the most, digit 9 the fewest), so the
imbalance ratio is `ratio` (default 25). A few deliberately bad rows show the
rejected/ output: a NaN, a short vector, an empty label.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def build_demo_corpus(folder: str, ratio: float = 25.0, seed: int = 0) -> str:
    """Writes folder/digits.parquet; returns its path."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    x, y = digits.data.astype(np.float32), digits.target
    n_max = int(np.bincount(y).min())
    keep = []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        n = max(1, round(n_max * ratio ** (-c / 9)))
        keep.append(rng.choice(idx, n, replace=False))
    keep = np.sort(np.concatenate(keep))
    feats = [list(map(float, row)) for row in x[keep]]
    labels = [str(v) for v in y[keep]]
    bad_rows = [(labels[0], [float("nan")] * 64), (labels[1], [1.0] * 63), ("", [0.0] * 64)]
    for label, f in bad_rows:
        labels.append(label)
        feats.append(f)
    table = pa.table({"label": pa.array(labels), "features": pa.array(feats, pa.list_(pa.float32()))})
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "digits.parquet")
    pq.write_table(table, path, row_group_size=256)
    return path


def long_tail_indices(y: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n_max = int(np.bincount(y).min())
    keep = [rng.choice(np.flatnonzero(y == c), max(1, round(n_max * ratio ** (-c / 9))), replace=False)
            for c in range(10)]
    return np.sort(np.concatenate(keep))


def build_demo_images(folder: str, ratio: float = 25.0, seed: int = 0, size: int = 80) -> str:
    """folder/<digit>/<n>.png: real 8x8 digits upscaled to size x size (InceptionV3 needs >= 75).

    Two bad files show rejected/: an empty file and a truncated PNG.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = long_tail_indices(digits.target, ratio, seed)
    for i in keep:
        label = str(digits.target[i])
        os.makedirs(os.path.join(folder, label), exist_ok=True)
        pixels = (digits.images[i] * (255.0 / 16.0)).astype(np.uint8)
        img = Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.BILINEAR)
        img.save(os.path.join(folder, label, f"{i:04d}.png"))
    open(os.path.join(folder, "0", "empty.png"), "wb").close()
    good = os.path.join(folder, "1", f"{keep[digits.target[keep] == 1][0]:04d}.png")
    with open(good, "rb") as f:
        data = f.read()
    with open(os.path.join(folder, "1", "truncated.png"), "wb") as f:
        f.write(data[: len(data) // 2])
    return folder
