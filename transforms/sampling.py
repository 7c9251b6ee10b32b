"""Deterministic per-class samples: the m rows with the smallest hash (bottom-m).

A bottom-m sample is a mergeable summary: the bottom m of a union is the bottom m
of the parts' bottom m's, so workers can sample their share of a class and the
results combine in any order and grouping to the same sample. Used for the k-means
sample, whose size is bounded by m whatever the class size.

Rows that tie on the 64-bit key are the same record (keys are hashes of ids), so
which of them survives a cut does not change the sample's content.
"""

from __future__ import annotations

import numpy as np


class BottomM:
    """The m rows with the smallest uint64 keys seen so far (keys and rows only)."""

    def __init__(self, m: int, dim: int, dtype=np.float32):
        self.m = int(m)
        self.dim = dim
        self.dtype = dtype
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []
        self._rows = 0

    def add(self, keys: np.ndarray, rows: np.ndarray) -> BottomM:
        if self.m == 0 or len(keys) == 0:
            return self
        keys = np.asarray(keys, np.uint64)
        rows = np.asarray(rows, self.dtype)
        if self._rows >= self.m and self._parts:  # only rows under the current m-th key can enter
            limit = self._parts[0][0].max() if len(self._parts) == 1 else None
            if limit is not None:
                below = keys < limit
                keys, rows = keys[below], rows[below]
        self._parts.append((keys, rows))
        self._rows += len(keys)
        if self._rows > self.m + max(self.m // 8, 4096):  # amortised: O(1) copies per row
            self._compact()
        return self

    def merge(self, other: BottomM) -> BottomM:
        for part in other._parts:
            self.add(*part)
        return self

    def _concat(self):
        if not self._parts:
            return np.zeros(0, np.uint64), np.zeros((0, self.dim), self.dtype)
        if len(self._parts) == 1:
            return self._parts[0]
        return tuple(np.concatenate([p[i] for p in self._parts]) for i in range(2))

    def compact(self) -> BottomM:
        """Cuts to at most m rows (before an accumulator is shipped)."""
        self._compact()
        return self

    def _compact(self) -> None:
        keys, rows = self._concat()
        if len(keys) > self.m:
            keep = np.argpartition(keys, self.m - 1)[: self.m]
            keys, rows = keys[keep], rows[keep]
        self._parts = [(keys, rows)] if len(keys) else []
        self._rows = len(keys)

    def extract(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, rows) of the sample, in increasing key order."""
        self._compact()
        keys, rows = self._concat()
        order = np.argsort(keys, kind="stable")
        return keys[order], rows[order]
