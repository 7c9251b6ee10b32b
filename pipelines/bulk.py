"""`Bulk`: a dict that Beam encodes as one pickle.

Beam's default coder (FastPrimitivesCoder) walks a plain dict, list or tuple value by
value and pickles every value of another type on its own, at some microseconds each for a
numpy array. An element that holds an array per class then costs more to encode than the
work that made it: at 10,000 classes the job's main process spent 17 s pickling 2.4
million small arrays one by one. A dict subclass is not one of the coder's own types, so
it goes to the pickle fallback whole: one call. Pickle itself still pays for each numpy
array (its reduce runs in Python), so a Bulk whose values are all 1-D arrays of one dtype
(the cluster histograms) travels as one array and their lengths. The job's elements that
hold a value per class or per group (class counts, cluster histograms, models) are Bulk.
"""

from __future__ import annotations

import numpy as np


class Bulk(dict):
    """A dict that Beam pickles in one piece (see the module's docstring)."""

    __slots__ = ()

    def __reduce__(self):
        values = list(self.values())
        if values and all(type(v) is np.ndarray and v.ndim == 1 and v.dtype == values[0].dtype for v in values):
            lengths = np.fromiter((len(v) for v in values), np.int64, len(values))
            return _arrays, (list(self), np.concatenate(values), lengths)
        return Bulk, (dict(self),)


def _arrays(keys: list, flat: np.ndarray, lengths: np.ndarray) -> Bulk:
    """A Bulk of 1-D arrays back from one array (each value a view of it)."""
    return Bulk(zip(keys, np.split(flat, np.cumsum(lengths)[:-1]), strict=True))
