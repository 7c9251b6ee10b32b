"""Per-class statistics of the first pass, as a mergeable accumulator.

For each class: how many valid records, how many fall in train by the hold-out
hash, the record with the largest hold-out hash (never held out, so that every
class keeps a training record), and the bottom-m k-means sample of its training
records. `ClassStats` follows the create / add / merge / extract shape, so the Beam
CombineFn around it is a few lines and the logic is tested without Beam.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transforms import hashing
from transforms.sampling import BottomM


@dataclass
class ClassSummary:
    count: int
    train: int  # records kept in train (the hold-out's complement)
    max_hold: int  # largest hold-out hash; that record always stays in train
    nbytes: int  # payload bytes of all the class's records (sizes the shards)
    sample: np.ndarray  # float32[m', D], in hash order


class ClassStats:
    def __init__(self, m: int, dim: int):
        self.count = 0
        self.nbytes = 0
        self.below = 0  # records whose hold-out hash is under the threshold
        self.max_hold = -1
        self.max_count = 0  # records that share the largest hold-out hash (duplicates)
        self.max_row = np.zeros((0, dim), np.float32)
        self.sample = BottomM(m, dim)

    def add(self, keys: np.ndarray, x: np.ndarray, seed: int, threshold: np.uint64,
            nbytes: int | None = None) -> ClassStats:
        hold = hashing.decision(keys, seed, hashing.HOLDOUT)
        under = hold < threshold
        self.count += len(keys)
        self.nbytes += x.nbytes if nbytes is None else int(nbytes)
        self.below += int(under.sum())
        top = int(np.argmax(hold))
        if int(hold[top]) > self.max_hold:
            self.max_hold = int(hold[top])
            self.max_count = int((hold == hold[top]).sum())
            self.max_row = x[top : top + 1]
        elif int(hold[top]) == self.max_hold:
            self.max_count += int((hold == hold[top]).sum())
        train = ~under
        if self.sample.m and train.any():
            self.sample.add(hashing.decision(keys[train], seed, hashing.SAMPLE), x[train])
        return self

    def merge(self, other: ClassStats) -> ClassStats:
        self.count += other.count
        self.nbytes += other.nbytes
        self.below += other.below
        if other.max_hold > self.max_hold:
            self.max_hold, self.max_row, self.max_count = other.max_hold, other.max_row, other.max_count
        elif other.max_hold == self.max_hold:
            self.max_count += other.max_count
        self.sample.merge(other.sample)
        return self

    def extract(self, seed: int) -> ClassSummary:
        _, rows = self.sample.extract()
        train = self.count - self.below
        if train == 0 and self.count:  # all under the threshold: the top record(s) stay
            train = self.max_count
            if self.sample.m:
                rows = self.max_row
        return ClassSummary(self.count, train, self.max_hold, self.nbytes, rows)


def holdout_mask(keys: np.ndarray, seed: int, threshold: np.uint64, max_hold: int) -> np.ndarray:
    """True for records that go to val/: under the threshold, and not the class's top record."""
    hold = hashing.decision(keys, seed, hashing.HOLDOUT)
    return (hold < threshold) & (hold != np.uint64(max_hold))
