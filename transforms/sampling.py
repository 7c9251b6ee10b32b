"""Deterministic per-class samples: the m rows with the smallest hash (bottom-m).

A bottom-m sample is a mergeable summary: the bottom m of a union is the bottom m
of the parts' bottom m's, so workers can sample their share of a class and the
results combine in any order and grouping to the same sample. Used for the k-means
sample, whose size is bounded by m whatever the class size.
"""

from __future__ import annotations

import numpy as np


class BottomM:
    """The m rows with the smallest uint64 keys seen so far (ties: by id)."""

    def __init__(self, m: int, dim: int, dtype=np.float32):
        self.m = int(m)
        self.keys = np.zeros(0, np.uint64)
        self.ids = np.zeros(0, dtype=object)
        self.rows = np.zeros((0, dim), dtype=dtype)

    def add(self, keys: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> BottomM:
        self.keys = np.concatenate([self.keys, np.asarray(keys, np.uint64)])
        self.ids = np.concatenate([self.ids, np.asarray(ids, dtype=object)])
        self.rows = np.concatenate([self.rows, np.asarray(rows, self.rows.dtype)])
        if len(self.keys) > 2 * self.m:
            self._compact()
        return self

    def merge(self, other: BottomM) -> BottomM:
        return self.add(other.keys, other.ids, other.rows)

    def _compact(self) -> None:
        if len(self.keys) <= self.m:
            return
        order = np.lexsort((self.ids.astype(str), self.keys))[: self.m]
        self.keys, self.ids, self.rows = self.keys[order], self.ids[order], self.rows[order]

    def extract(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys, ids, rows) of the sample, in increasing key order."""
        self._compact()
        order = np.lexsort((self.ids.astype(str), self.keys))
        return self.keys[order], self.ids[order], self.rows[order]
