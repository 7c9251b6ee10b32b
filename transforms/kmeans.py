"""Per-class k-means: fit on a bounded sample, assign every row, vectorised.

Fitting uses scikit-learn's MiniBatchKMeans with large mini-batches, seeded from
(seed, class), on one OpenMP thread (its sums over threads would depend on the cores);
classes fit side by side instead (the job's processes: pipelines/parallel.py). A sample
of at most k distinct rows needs no fit: those rows are its centroids (`exact_centroids`).
Assignment is the nearest centroid by squared Euclidean distance, computed with one
matrix product per batch; rows whose two nearest centroids are too close to call in
floating point are re-decided exactly, so the cluster of a row never depends on the
batch it arrived in.
"""

from __future__ import annotations

import warnings

import numpy as np

FIT_BATCH = 32768  # mini-batch rows; large batches match full KMeans at a fraction of the time
TIE_TOLERANCE = 1e-6


def distinct_rows(x: np.ndarray, limit: int) -> int:
    """Number of distinct rows of x, counting no further than `limit`."""
    rows = np.ascontiguousarray(x).view(np.dtype((np.void, x.dtype.itemsize * x.shape[1])))
    head = len(np.unique(rows[: 4 * limit]))  # usually enough, without sorting the whole sample
    return limit if head >= limit else min(limit, len(np.unique(rows)))


def exact_centroids(sample: np.ndarray, k: int) -> np.ndarray | None:
    """The centroids of a sample with at most k distinct rows: those rows (lexicographic
    order), the exact optimum (every row its own cluster, zero inertia); None when the
    sample has more than k distinct rows and needs a fit.

    No fit is run for such a class (thousands of tiny classes in a long tail would pay
    scikit-learn's ~5 ms per fit each); MiniBatchKMeans would return about the same points,
    off by a few ulps, or now and then merge two rows into one centroid."""
    sample = np.asarray(sample, dtype=np.float32)
    if len(sample) == 0:
        raise ValueError("cannot fit k-means on an empty sample")
    if len(sample) > 4 * k and distinct_rows(sample, k + 1) > k:  # no np.unique of a large sample
        return None
    rows = np.unique(sample, axis=0)
    if len(rows) > k:
        return None
    return np.ascontiguousarray(rows[np.lexsort(rows.T[::-1])])


def fit_centroids(sample: np.ndarray, k: int, seed) -> np.ndarray:
    """Centroids (k_c, D) for one class, k_c = min(k, distinct rows of the sample): the
    rows themselves when there are at most k of them (`exact_centroids`), else
    MiniBatchKMeans's.

    Args:
      sample: the class's k-means sample, in hash order (so the fit is reproducible).
      k: clusters asked for.
      seed: the class's seed (see hashing.seed_for), or a function that returns it (called
        only when a fit runs).
    """
    from sklearn.cluster import MiniBatchKMeans

    exact = exact_centroids(sample, k)
    if exact is not None:
        return exact
    sample = np.asarray(sample, dtype=np.float32)
    seed = seed() if callable(seed) else seed
    model = MiniBatchKMeans(
        n_clusters=k,
        random_state=seed,
        batch_size=min(len(sample), FIT_BATCH),
        n_init=3,
        max_no_improvement=10,
    )
    with warnings.catch_warnings(), _one_openmp_thread():
        warnings.simplefilter("ignore")  # ConvergenceWarning on tiny or degenerate samples
        model.fit(sample)
    centroids = model.cluster_centers_.astype(np.float32)
    # Canonical order (lexicographic) so ids do not depend on sklearn internals.
    order = np.lexsort(centroids.T[::-1])
    return centroids[order]


_OPENMP = None  # threadpoolctl's handle on scikit-learn's OpenMP, made at the first fit


def _one_openmp_thread():
    """One OpenMP thread for this thread while the fit runs: scikit-learn's sums over threads
    would tie the fit to the machine's cores. The limit is the calling thread's own, so fits
    on other threads keep theirs."""
    global _OPENMP
    if _OPENMP is None:  # once: a controller looks through every loaded library (~5 ms)
        from threadpoolctl import ThreadpoolController

        _OPENMP = ThreadpoolController().select(user_api="openmp")
    return _OPENMP.limit(limits=1)


def assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid for each row (int32)."""
    x = np.asarray(x, dtype=np.float64)
    c = np.asarray(centroids, dtype=np.float64)
    if len(c) == 1 or len(x) == 0:
        return np.zeros(len(x), dtype=np.int32)
    d = (c * c).sum(axis=1)[None, :] - 2.0 * (x @ c.T)
    best = np.argmin(d, axis=1)
    part = np.partition(d, 1, axis=1)
    scale = (x * x).sum(axis=1) + np.abs(part[:, 0])
    close = (part[:, 1] - part[:, 0]) <= TIE_TOLERANCE * np.maximum(scale, 1.0)
    if close.any():
        rows = x[close]
        exact = np.stack([((rows - cj) ** 2).sum(axis=1) for cj in c], axis=1)
        best[close] = np.argmin(exact, axis=1)  # first minimum: ties go to the lower id
    return best.astype(np.int32)
