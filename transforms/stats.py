"""Per-class counts of the first pass, as a mergeable accumulator.

For each class: how many valid records, how many fall in train by the hold-out hash,
the largest hold-out hash (that record is never held out, so every class keeps a
training record), and the payload bytes (to size the shards). `ClassStats` follows the
create / add / merge / extract shape, so the Beam CombineFn around it is a few lines and
the logic is tested without Beam. The k-means sample is drawn in the next pass, once
these counts are known (pipelines/stages.py, ClassCentroids).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transforms import hashing


@dataclass
class ClassSummary:
    count: int
    train: int  # records kept in train (the hold-out's complement)
    max_hold: int  # largest hold-out hash; that record always stays in train
    nbytes: int  # payload bytes of all the class's records (sizes the shards)


class ClassStats:
    def __init__(self):
        self.count = 0
        self.nbytes = 0
        self.below = 0  # records whose hold-out hash is under the threshold
        self.max_hold = -1
        self.max_count = 0  # records that share the largest hold-out hash (duplicates)

    def add(self, keys: np.ndarray, seed: int, threshold: np.uint64, nbytes: int = 0) -> ClassStats:
        hold = hashing.decision(keys, seed, hashing.HOLDOUT)
        self.count += len(keys)
        self.nbytes += int(nbytes)
        self.below += int((hold < threshold).sum())
        top = hold.max()
        if int(top) > self.max_hold:
            self.max_hold, self.max_count = int(top), int((hold == top).sum())
        elif int(top) == self.max_hold:
            self.max_count += int((hold == top).sum())
        return self

    def merge(self, other: ClassStats) -> ClassStats:
        self.count += other.count
        self.nbytes += other.nbytes
        self.below += other.below
        if other.max_hold > self.max_hold:
            self.max_hold, self.max_count = other.max_hold, other.max_count
        elif other.max_hold == self.max_hold:
            self.max_count += other.max_count
        return self

    def extract(self) -> ClassSummary:
        train = self.count - self.below
        if train == 0 and self.count:  # all under the threshold: the top record(s) stay
            train = self.max_count
        return ClassSummary(self.count, train, self.max_hold, self.nbytes)


def holdout_mask(keys: np.ndarray, seed: int, threshold: np.uint64, max_hold: int) -> np.ndarray:
    """True for records that go to val/: under the threshold, and not the class's top record."""
    hold = hashing.decision(keys, seed, hashing.HOLDOUT)
    return (hold < threshold) & (hold != np.uint64(max_hold))
