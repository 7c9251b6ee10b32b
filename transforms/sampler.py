"""An in-memory sampler with imbalanced-learn's API, built on the Beam job's pure core.

    from transforms.sampler import ClusterBalancedSampler
    X_res, y_res = ClusterBalancedSampler(random_state=0).fit_resample(X, y)

`ClusterBalancedSampler` makes every decision the way `python -m pipelines.balance`
does, with the same functions: ids are the hex of a content hash of (label, float32
feature bytes) (`hashing.content_keys`); each class's k-means sample is the bottom-m
rows by `decision(key, seed, SAMPLE)` (`sampling.BottomM`), fitted with
`kmeans.fit_centroids` seeded by `seed_for(seed, label)`; every row is assigned with
`kmeans.assign`; quotas come from `plan.plan_quotas`; copies from
`selection.exact_copies` over `decision(key, seed, COPIES)`. So the same data and
seed give the same per-(class, cluster) quotas and the same multiset of output rows as
the job run with `--holdout_fraction 0` and `--kmeans_sample` at least the largest
class (smaller samples agree too, except with negligible probability).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
import pyarrow as pa
from imblearn.base import BaseSampler
from scipy import sparse
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from transforms import hashing, kmeans, records, selection
from transforms import plan as planning
from transforms.sampling import BottomM

# transforms.plan's parameters, as this sampler names them
PARAMETER_NAMES = {"target": "sampling_strategy", "target_counts": "sampling_strategy", "strategy": "strategy"}


@contextmanager
def _named_as_parameters():
    """transforms.plan's errors in this sampler's words (the parameters a caller passed)."""
    try:
        yield
    except planning.SpecError as e:
        raise ValueError(e.named(PARAMETER_NAMES)) from None


def label_texts(classes: np.ndarray) -> list[str]:
    """Each class as the job names it: integer labels (and whole floats) in decimal."""
    try:
        arr = pa.array(np.asarray(classes).tolist())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return [str(c) for c in classes]
    return [str(t) for t in records.label_strings(arr)]


def _float32_rows(X, rows: np.ndarray) -> np.ndarray:
    """Rows of X as a dense float32 matrix: what the job reads, hashes and clusters."""
    x = X[rows]
    if sparse.issparse(x):
        x = x.toarray()
    return np.ascontiguousarray(x, dtype=np.float32)


class ClusterBalancedSampler(BaseSampler):
    """Cluster-balanced (Jo & Japkowicz) and random resampling with exact quotas.

    Read docs/ARCHITECTURE.md (`transforms/sampler.py`, "Contracts").

    Parameters
    ----------
    strategy : {"cluster", "oversample", "undersample", "hybrid", "none"}, default="cluster"
        As the job's ``--strategy``. ``cluster`` runs k-means inside each class and
        resamples every cluster of a class to the same size; the others resample each
        class as one group (no k-means); ``none`` returns the data as it is.
    sampling_strategy : str, int, float, dict or callable, default="auto"
        The class targets, as the job's ``--target`` / ``--target_counts``:
        ``"auto"`` (the strategy's default: ``max`` for cluster, ``majority`` for
        oversample, ``minority`` for undersample, ``median`` for hybrid),
        ``"majority"``, ``"minority"``, ``"mean"``, ``"median"``, ``"max"`` (max over
        classes of K_c times its largest cluster), an int (a record count), a float in
        (0, 1] (a ratio of the majority class's size), or a dict of class to count
        (classes left out keep their size), or a callable ``f(y) -> dict``.
        Oversample never shrinks a class and undersample never grows one. Note that
        ``"minority"`` and a float mean what they mean for the job, which differs from
        imbalanced-learn's over-samplers.
    clusters_per_class : int, default=8
        k of the per-class k-means (``--clusters_per_class``); a class gets
        min(k, distinct rows of its sample) clusters. Used by ``strategy="cluster"``.
    kmeans_sample : int, default=100_000
        Rows per class the k-means is fitted on (``--kmeans_sample``): the ones with
        the smallest sample hash.
    random_state : int, RandomState instance or None, default=None
        The job's ``--seed`` when an int. None or a RandomState draws a seed from
        numpy's generator (``seed_`` says which).

    Attributes
    ----------
    classes_ : ndarray
        The classes, sorted (``np.unique(y)``).
    seed_ : int
        The seed every decision used.
    targets_ : dict
        Class -> records after resampling. ``sampling_strategy_`` is the same dict.
    cluster_sizes_ : dict
        Class -> int array: input rows per cluster (length: largest cluster id + 1,
        as the job's manifest lists them).
    quotas_ : dict
        Class -> int array: output rows per cluster; sums to the class's target.
    centroids_ : dict
        Class -> float32 array (k_c, n_features) for ``strategy="cluster"``, else None.
    clusters_ : ndarray of shape (n_samples,)
        Cluster of each input row (0 for the random strategies).
    ids_ : ndarray of shape (n_samples,)
        Id of each input row: the hex content hash the job gives a record without id.
    sample_indices_ : ndarray of shape (n_samples_new,)
        Rows of X that make the output, in increasing order (a row repeats once per copy).
    n_features_in_ : int
        Number of features seen in ``fit_resample``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen in ``fit_resample``, when X has string column names.

    Examples
    --------
    >>> sampler = ClusterBalancedSampler(clusters_per_class=4, random_state=0)
    >>> X_res, y_res = sampler.fit_resample(X, y)          # doctest: +SKIP
    >>> sampler.quotas_                                     # doctest: +SKIP
    """

    _sampling_type = "bypass"  # targets are resolved by transforms.plan, not imblearn

    _parameter_constraints: dict = {
        "strategy": [StrOptions(set(planning.STRATEGIES))],
        "sampling_strategy": [
            str,
            Interval(Integral, 1, None, closed="left"),
            Interval(Real, 0, 1, closed="right"),
            dict,
            callable,
        ],
        "clusters_per_class": [Interval(Integral, 1, None, closed="left")],
        "kmeans_sample": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        strategy="cluster",
        sampling_strategy="auto",
        clusters_per_class=8,
        kmeans_sample=100_000,
        random_state=None,
    ):
        super().__init__(sampling_strategy=sampling_strategy)
        self.strategy = strategy
        self.clusters_per_class = clusters_per_class
        self.kmeans_sample = kmeans_sample
        self.random_state = random_state

    def fit(self, X, y):
        """Fits the plan (clusters, targets, quotas) without returning the resampled data."""
        self.fit_resample(X, y)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.sampler_tags.sample_indices = True
        return tags

    def _seed(self) -> int:
        if isinstance(self.random_state, Integral):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _targets_spec(self, y, classes, texts: list[str]):
        """sampling_strategy -> (target, target_counts) in the terms of transforms.plan."""
        spec = self.sampling_strategy
        if self.strategy == "none" and not (isinstance(spec, str) and spec == "auto"):
            raise ValueError(
                f"strategy='none' returns the data as it is: leave sampling_strategy='auto'. "
                f"Received: {spec!r}"
            )
        if callable(spec):
            spec = spec(y)
            if not isinstance(spec, Mapping):
                raise ValueError(
                    f"A callable sampling_strategy must return a dict of class to count. "
                    f"Received: {spec!r}"
                )
        if isinstance(spec, Mapping):
            text_of = dict(zip(classes.tolist(), texts, strict=True))
            counts = {}
            for label, value in spec.items():
                key = label.item() if isinstance(label, np.generic) else label
                counts[text_of.get(key, str(label))] = (
                    int(value) if isinstance(value, np.integer) else value
                )
            return None, counts
        with _named_as_parameters():
            return planning.parse_target(spec), None

    def _fit_resample(self, X, y):
        seed = self.seed_ = self._seed()
        classes, inverse = np.unique(y, return_inverse=True)
        texts = label_texts(classes)
        if len(set(texts)) < len(texts):
            raise ValueError(f"Two classes have the same label text: {dict(zip(classes.tolist(), texts, strict=True))}")
        target, target_counts = self._targets_spec(y, classes, texts)
        k = self.clusters_per_class if self.strategy == "cluster" else 1

        n = X.shape[0]
        keys = np.zeros(n, np.uint64)
        clusters = np.zeros(n, np.int32)
        members, sizes, centroids = [], {}, {}
        for i, text in enumerate(texts):
            rows = np.flatnonzero(inverse == i)
            x = _float32_rows(X, rows)
            keys[rows] = hashing.content_keys(np.full(len(rows), text, dtype=object), x)
            centroids[classes[i]] = None
            if k > 1:
                u = hashing.decision(keys[rows], seed, hashing.SAMPLE)
                _, sample = BottomM(self.kmeans_sample, x.shape[1]).add(u, x).extract()
                c = kmeans.fit_centroids(sample, k, hashing.seed_for(seed, text))
                clusters[rows] = kmeans.assign(x, c)
                centroids[classes[i]] = c
            members.append(rows)
            sizes[text] = np.bincount(clusters[rows])
        ids = hashing.hex_ids(keys)

        with _named_as_parameters():
            plans = planning.plan_quotas(sizes, self.strategy, target, target_counts)

        u = hashing.decision(keys, seed, hashing.COPIES)
        copies = np.zeros(n, np.int64)
        for rows, cp in zip(members, plans, strict=True):
            for j, quota in enumerate(cp.quotas):
                group = rows[clusters[rows] == j]
                copies[group] = selection.exact_copies(u[group], ids[group], quota)

        self.classes_ = classes
        self.targets_ = OrderedDict((c, cp.target) for c, cp in zip(classes, plans, strict=True))
        self.sampling_strategy_ = self.targets_
        self.cluster_sizes_ = {c: np.array(cp.cluster_sizes) for c, cp in zip(classes, plans, strict=True)}
        self.quotas_ = {c: np.array(cp.quotas) for c, cp in zip(classes, plans, strict=True)}
        self.centroids_ = centroids
        self.clusters_ = clusters
        self.ids_ = ids
        self.sample_indices_ = np.repeat(np.arange(n), copies)
        return _safe_indexing(X, self.sample_indices_), _safe_indexing(y, self.sample_indices_)
