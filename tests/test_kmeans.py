import subprocess
import sys
import textwrap

import numpy as np

from transforms import kmeans


def blobs(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], np.float32)
    return (centres[rng.integers(0, 4, n)] + rng.normal(0, 0.5, (n, 2))).astype(np.float32)


def test_fit_is_deterministic_and_finds_the_blobs():
    x = blobs()
    c1 = kmeans.fit_centroids(x, 4, seed=3)
    c2 = kmeans.fit_centroids(x, 4, seed=3)
    assert np.array_equal(c1, c2)
    want = np.array([[0, 0], [0, 10], [10, 0], [10, 10]])
    nearest = np.sqrt(((want[:, None, :] - c1[None]) ** 2).sum(-1)).min(axis=1)
    assert nearest.max() < 0.3


def test_k_is_capped_by_distinct_points():
    x = np.array([[1, 1], [1, 1], [2, 2]], np.float32)
    assert len(kmeans.fit_centroids(x, 8, seed=0)) == 2
    assert len(kmeans.fit_centroids(np.ones((5, 2), np.float32), 8, seed=0)) == 1


def test_a_sample_of_at_most_k_distinct_rows_is_its_own_centroids_without_a_fit():
    rng = np.random.default_rng(4)
    rows = rng.normal(size=(6, 3)).astype(np.float32)
    x = rows[rng.integers(0, 6, 40)]  # 40 rows, 6 distinct (or fewer): past the 4k head of distinct_rows
    seeds = []
    c = kmeans.fit_centroids(x, 8, seed=lambda: seeds.append(1) or 0)
    distinct = np.unique(x, axis=0)
    assert c.tobytes() == distinct[np.lexsort(distinct.T[::-1])].tobytes()  # the rows, bit for bit, sorted
    assert not seeds  # no fit ran, so no seed was derived
    assert np.array_equal(kmeans.assign(x, c), [np.flatnonzero((c == r).all(1))[0] for r in x])  # each row its own
    assert kmeans.exact_centroids(rng.normal(size=(9, 3)).astype(np.float32), 8) is None  # 9 distinct: a fit
    assert kmeans.exact_centroids(np.concatenate([rows] * 20 + [rows[:1] + 1]), 6) is None  # 7 distinct in 121 rows


def test_inertia_close_to_full_kmeans():
    from sklearn.cluster import KMeans

    x = blobs(20000, 1)
    c = kmeans.fit_centroids(x, 4, seed=0)
    full = KMeans(4, n_init=3, random_state=0).fit(x)
    inertia = ((x - c[kmeans.assign(x, c)]) ** 2).sum()
    assert inertia <= full.inertia_ * 1.02


def test_assign_does_not_depend_on_batch():
    x = blobs(5000, 2)
    c = kmeans.fit_centroids(x, 4, seed=0)
    whole = kmeans.assign(x, c)
    parts = np.concatenate([kmeans.assign(p, c) for p in np.array_split(x, 7)])
    assert np.array_equal(whole, parts)
    brute = np.argmin(((x[:, None, :].astype(np.float64) - c[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(whole, brute)


def test_assign_exact_tie_goes_to_lower_id():
    c = np.array([[0.0, 0.0], [2.0, 0.0]], np.float32)
    assert kmeans.assign(np.array([[1.0, 0.0]], np.float32), c).tolist() == [0]


def test_distinct_rows_counts_past_a_repetitive_head():
    x = np.repeat(np.arange(6, dtype=np.float32)[:, None], 50, axis=0)  # 6 distinct, each 50 times in a row
    assert kmeans.distinct_rows(x, 8) == 6 and kmeans.distinct_rows(x, 4) == 4
    assert kmeans.distinct_rows(x[:0], 8) == 0


def test_fits_on_forked_processes_equal_fits_here_before_and_after_openmp_ran_here():
    """As in the job, the processes fork before this process imports scikit-learn, and the first
    fits arrive while they still import it; a second pool forks after OpenMP ran here
    on several threads (GNU OpenMP's threads do not survive a fork). Neither hangs, and both
    fit what this process fits."""
    script = textwrap.dedent("""
        import sys
        import numpy as np
        from transforms import kmeans

        rng = np.random.default_rng(0)
        samples = [rng.normal(size=(n, d)).astype(np.float32) for n, d in ((50000, 256), (3000, 8), (40, 8))]
        args = [(s, 4, i) for i, s in enumerate(samples)]
        from pipelines import parallel
        parallel.start(2, fits=True)
        pool = parallel.processes()[0]
        assert "sklearn" not in sys.modules
        first = [pool.submit(kmeans.fit_centroids, *a) for a in args]  # while the workers import
        first = [f.result(timeout=120) for f in first]
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits
        with threadpool_limits(2):
            KMeans(4, n_init=1, random_state=0).fit(samples[0])  # OpenMP's and BLAS's threads started here
        here = [kmeans.fit_centroids(*a) for a in args]
        parallel.start(3, fits=True)
        later = [parallel.processes()[0].submit(kmeans.fit_centroids, *a).result(timeout=120) for a in args]
        assert all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(here, first, later, strict=True))
        print("same")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "same", done.stderr[-2000:]


def test_a_sample_too_large_to_send_is_fitted_here(monkeypatch):
    from pipelines.passes.clustering import FitKMeans

    x = blobs(2000, 4)
    monkeypatch.setattr(FitKMeans, "POOL_SAMPLE_BYTES", x.nbytes - 1)
    assert FitKMeans.fit_here(("c", x)) and not FitKMeans.fit_here(("c", x[:-1]))
    label, centroids = FitKMeans(4, seed=7)(("c", x))
    assert label == "c" and len(centroids) == 4
