"""Exact quotas from hashes: how many copies of each row a group writes.

A group (one class's cluster) with n rows and quota q writes every row q // n times,
plus once more for the r = q % n rows with the smallest hash(id, seed); with
q < n this keeps the q smallest (undersampling). Finding the r-th smallest hash of
a group spread over many workers needs no sort of the group:

1. each worker histograms its rows' hashes into 2**bits buckets (top bits); the
   histograms add up (a combine);
2. the bucket that holds the r-th smallest is found from the cumulative counts;
   rows below it take the extra copy, rows above it do not;
3. only the rows inside that one bucket (about n / 2**bits of them) are gathered
   and sorted to settle the rest.

`bits` grows with the class size so that step 3 stays small at any scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BUCKET_TARGET = 1024  # rows per bucket aimed at in a large class; bounds the rows gathered in step 3
SMALL_BUCKETS = 64  # buckets at least, down to SMALL_ROWS rows each, for a smaller class
SMALL_ROWS = 4
MAX_BITS = 20


def bucket_bits(n: int) -> int:
    """Bucket-index width for a class of about n rows: about BUCKET_TARGET rows a bucket in
    a large class; in a smaller one SMALL_BUCKETS buckets (SMALL_ROWS rows each at the
    least), so that thousands of small classes do not each gather their whole class in
    step 3 (together, the whole corpus) while a histogram stays at most 64 counts long.
    Which rows take the extra copy does not depend on the width: bucket order is hash
    order."""
    want = max(n / BUCKET_TARGET, min(n / SMALL_ROWS, SMALL_BUCKETS))
    return 0 if want <= 1 else min(MAX_BITS, math.ceil(math.log2(want)))


def bucket_of(u: np.ndarray, bits: int) -> np.ndarray:
    if bits == 0:
        return np.zeros(len(u), dtype=np.int64)
    return (np.asarray(u, np.uint64) >> np.uint64(64 - bits)).astype(np.int64)


def bucket_histogram(u: np.ndarray, bits: int) -> np.ndarray:
    return np.bincount(bucket_of(u, bits), minlength=1 << bits).astype(np.int64)


@dataclass(frozen=True)
class GroupRule:
    """How a group's rows get their copies once its histogram is known."""

    base: int  # copies every row gets
    bits: int
    boundary: int  # bucket that holds the r-th smallest hash; -1 when r == 0
    need: int  # rows inside `boundary` that take the extra copy
    in_boundary: int  # rows inside `boundary`

    @property
    def gathers(self) -> bool:
        """Whether the boundary bucket's rows must be gathered and sorted."""
        return self.boundary >= 0 and 0 < self.need < self.in_boundary


def group_rule(histogram: np.ndarray, bits: int, quota: int) -> GroupRule:
    """The rule for a group with this bucket histogram and quota."""
    n = int(histogram.sum())
    if n == 0:
        if quota:
            raise ValueError(f"a group with no rows cannot have quota {quota}")
        return GroupRule(0, bits, -1, 0, 0)
    base, r = divmod(int(quota), n)
    if r == 0:
        return GroupRule(base, bits, -1, 0, 0)
    cum = np.cumsum(histogram)
    boundary = int(np.searchsorted(cum, r, side="left"))
    below = int(cum[boundary - 1]) if boundary else 0
    return GroupRule(base, bits, boundary, r - below, int(histogram[boundary]))


def copies_by_rule(u: np.ndarray, rule: GroupRule) -> tuple[np.ndarray, np.ndarray]:
    """Copies per row, and a mask of rows left for the boundary step (copies unset)."""
    copies = np.full(len(u), rule.base, dtype=np.int64)
    pending = np.zeros(len(u), dtype=bool)
    if rule.boundary < 0:
        return copies, pending
    b = bucket_of(u, rule.bits)
    copies[b < rule.boundary] += 1
    at = b == rule.boundary
    if rule.need == rule.in_boundary:
        copies[at] += 1
    else:
        pending = at
    return copies, pending


def settle_boundary(u: np.ndarray, ids: np.ndarray, rule: GroupRule) -> np.ndarray:
    """Copies for all the rows of a group's boundary bucket, gathered in one place.

    Order is (hash, id): rows that tie on both are the same record, so which of
    them gets the extra copy does not change the output.
    """
    order = np.lexsort((np.asarray(ids), np.asarray(u, np.uint64)))
    copies = np.full(len(u), rule.base, dtype=np.int64)
    copies[order[: rule.need]] += 1
    return copies


def exact_copies(u: np.ndarray, ids: np.ndarray, quota: int) -> np.ndarray:
    """Copies per row for one group held in memory (the reference for the above)."""
    n = len(u)
    if n == 0:
        return np.zeros(0, np.int64)
    base, r = divmod(int(quota), n)
    order = np.lexsort((np.asarray(ids), np.asarray(u, np.uint64)))
    copies = np.full(n, base, dtype=np.int64)
    copies[order[:r]] += 1
    return copies
