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
