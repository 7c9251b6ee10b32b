"""Corpora for the numpy replica: dict(xtr, ytr, xva, yva, xte, yte), split without the job.

digits(seed, ratio, thumbs): load_digits, 100 balanced test digits per class, the rest
long-tailed; thumbs: the 16x16 grey thumbnails of 80x80 PNGs, as the job computes them.
synth(seed, ...): make_classification, test drawn like the corpus (or balanced with
balanced_test=True). Val: 20% of each class (at least one record stays in train).
"""

import io
from functools import lru_cache

import numpy as np


def tail_counts(n_max, ratio, C):
    return [max(1, round(n_max * ratio ** (-c / (C - 1)))) for c in range(C)]


def split_val(x, y, frac, rng):
    va = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        k = min(int(round(frac * len(idx))), len(idx) - 1)
        va[idx[:k]] = True
    return x[~va], y[~va], x[va], y[va]


@lru_cache(None)
def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data.astype(np.float32), d.target, d.images


@lru_cache(None)
def _thumbs():
    from PIL import Image

    x, y, images = _digits()
    out = []
    for img in images:
        px = (img * (255.0 / 16.0)).astype(np.uint8)
        big = Image.fromarray(px, "L").resize((80, 80), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        big.save(buf, "PNG")
        im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        small = im.resize((16, 16), Image.Resampling.BILINEAR, reducing_gap=2.0).convert("L")
        out.append(np.asarray(small, np.float32).ravel() / 255.0)
    return np.stack(out)


def digits(seed, ratio=50, test_per_class=100, thumbs=False, frac=0.2):
    x, y, _ = _digits()
    if thumbs:
        x = _thumbs()
    rng = np.random.default_rng(seed)
    te, pool = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        te.append(idx[:test_per_class])
        pool.append(idx[test_per_class:])
    n_max = min(len(p) for p in pool)
    keep = np.concatenate([p[:k] for p, k in zip(pool, tail_counts(n_max, ratio, 10), strict=False)])
    te = np.concatenate(te)
    xtr, ytr, xva, yva = split_val(x[keep], y[keep], frac, rng)
    return dict(
        xtr=xtr, ytr=ytr, xva=xva, yva=yva, xte=x[te], yte=y[te], gtr=np.zeros(len(ytr), int)
    )


def synth(
    seed,
    n_train=12000,
    ratio=100,
    C=10,
    test_n=10000,
    sep=1.2,
    feats=32,
    inf=12,
    clusters=2,
    frac=0.2,
    balanced_test=False,
):
    from sklearn.datasets import make_classification

    shares = ratio ** (-np.arange(C) / (C - 1))
    shares /= shares.sum()
    # one generator (fixed random_state = 0: the same problem), then draw train pool and test from it
    big = int(C * (test_n // C + n_train * shares[0]) * 1.1)
    x, y = make_classification(
        n_samples=big if balanced_test else n_train + test_n,
        n_features=feats,
        n_informative=inf,
        n_redundant=4,
        n_classes=C,
        n_clusters_per_class=clusters,
        class_sep=sep,
        weights=None if balanced_test else list(shares),
        flip_y=0.0,
        random_state=1000 + seed,
    )
    rng = np.random.default_rng(seed)
    if balanced_test:
        te, pool = [], []
        for c in range(C):
            idx = rng.permutation(np.flatnonzero(y == c))
            te.append(idx[: test_n // C])
            pool.append(idx[test_n // C :])
        keep = np.concatenate([p[: int(round(n_train * s))] for p, s in zip(pool, shares, strict=False)])
        te = np.concatenate(te)
    else:
        idx = rng.permutation(len(y))
        te, keep = idx[:test_n], idx[test_n:]
    xtr, ytr, xva, yva = split_val(x[keep].astype(np.float32), y[keep], frac, rng)
    return dict(
        xtr=xtr,
        ytr=ytr,
        xva=xva,
        yva=yva,
        xte=x[te].astype(np.float32),
        yte=y[te],
        gtr=np.zeros(len(ytr), int),
    )
