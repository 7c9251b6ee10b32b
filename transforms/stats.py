"""Per-class counts of the first pass, and the hold-out rule, as plain numpy.

`HoldoutRule` says which split a record goes to: one uniform hash per record,
hash(key, seed), puts it in val/ below the val fraction, in test/ in the next
test-fraction band, in train otherwise; so val and test are disjoint and each is
hash-chosen per class. The record with a class's largest hold-out hash is never held
out, so every class keeps at least one training record.

`ClassStats` counts, per class: valid records, how many fall in val, test and train
by that rule, the largest hold-out hash, and the payload bytes (to size the shards).
It follows the create / add / merge / extract shape, so the Beam CombineFn around it
is a few lines and the logic is tested without Beam. The k-means sample is drawn in
the next pass, once these counts are known (pipelines/passes/clustering.py, ClassCentroids).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transforms import hashing

TRAIN, VAL, TEST = 0, 1, 2


@dataclass(frozen=True)
class HoldoutRule:
    """Which records are held out: `val_fraction` of each class to val, `test_fraction` to test."""

    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.0

    def __post_init__(self):
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise ValueError("val_fraction and test_fraction must be in [0, 1) with a sum under 1. "
                             f"Received: val_fraction={self.val_fraction}, test_fraction={self.test_fraction}")

    @property
    def thresholds(self) -> tuple[np.uint64, np.uint64]:
        """Hold-out hashes under the first go to val, under the second (and not the first) to test."""
        return (hashing.fraction_threshold(self.val_fraction),
                hashing.fraction_threshold(self.val_fraction + self.test_fraction))

    def hashes(self, keys: np.ndarray) -> np.ndarray:
        return hashing.decision(keys, self.seed, hashing.HOLDOUT)

    def split(self, keys: np.ndarray, max_hold: int) -> np.ndarray:
        """TRAIN, VAL or TEST per record; `max_hold` is its class's largest hold-out hash."""
        return self.split_classes(keys, np.zeros(len(keys), np.int64), [max_hold])

    def split_classes(self, keys: np.ndarray, codes: np.ndarray, max_holds) -> np.ndarray:
        """TRAIN, VAL or TEST per record of many classes at once: `codes` gives each record's
        class, `max_holds[code]` that class's largest hold-out hash (-1: none seen yet)."""
        hold = self.hashes(keys)
        val, test = self.thresholds
        out = np.where(hold < val, VAL, np.where(hold < test, TEST, TRAIN)).astype(np.int8)
        known = np.array([m >= 0 for m in max_holds], bool)
        tops = np.array([m if m >= 0 else 0 for m in max_holds], np.uint64)
        out[known[codes] & (hold == tops[codes])] = TRAIN
        return out


@dataclass
class ClassSummary:
    count: int
    train: int  # records kept in train (the hold-out's complement)
    val: int
    test: int
    max_hold: int  # largest hold-out hash; that record always stays in train
    nbytes: int  # payload bytes of all the class's records (sizes the shards)


class ClassStats:
    def __init__(self, rule: HoldoutRule):
        self.rule = rule
        self.count = 0
        self.nbytes = 0
        self.below_val = 0  # records whose hold-out hash is under the val threshold
        self.below_test = 0  # ... under the test threshold (val included)
        self.max_hold = -1
        self.max_count = 0  # records that share the largest hold-out hash (duplicates)

    def add(self, keys: np.ndarray, nbytes: int = 0) -> ClassStats:
        """The records `keys` of this class (their payload `nbytes` in all), counted in."""
        (stats,) = ClassStats.of_classes(self.rule, np.zeros(len(keys), np.int64), 1, keys, np.zeros(len(keys)))
        stats.nbytes = int(nbytes)
        return self.merge(stats)

    def merge(self, other: ClassStats) -> ClassStats:
        self.count += other.count
        self.nbytes += other.nbytes
        self.below_val += other.below_val
        self.below_test += other.below_test
        if other.max_hold > self.max_hold:
            self.max_hold, self.max_count = other.max_hold, other.max_count
        elif other.max_hold == self.max_hold:
            self.max_count += other.max_count
        return self

    @staticmethod
    def of_classes(rule: HoldoutRule, codes: np.ndarray, n: int, keys: np.ndarray,
                   row_bytes: np.ndarray) -> list[ClassStats]:
        """One ClassStats per class code 0 .. n-1 of the records (`codes`, their `keys` and
        payload bytes): what `add` on each class's records gives, in one pass over them all."""
        hold = rule.hashes(keys)
        val, test = rule.thresholds
        count = np.bincount(codes, minlength=n)
        below_val = np.bincount(codes[hold < val], minlength=n)
        below_test = np.bincount(codes[hold < test], minlength=n)
        top = np.zeros(n, np.uint64)
        np.maximum.at(top, codes, hold)
        at_top = np.bincount(codes[hold == top[codes]], minlength=n)
        nbytes = np.bincount(codes, weights=row_bytes, minlength=n)
        out = []
        for i in range(n):
            s = ClassStats(rule)
            s.count, s.nbytes, s.below_val, s.below_test = int(count[i]), int(nbytes[i]), int(below_val[i]), \
                int(below_test[i])
            if s.count:
                s.max_hold, s.max_count = int(top[i]), int(at_top[i])
            out.append(s)
        return out

    def extract(self) -> ClassSummary:
        train, val, test = self.count - self.below_test, self.below_val, self.below_test - self.below_val
        if train == 0 and self.count:  # all held out: the top record(s) stay in train
            train = self.max_count
            if self.max_hold < int(self.rule.thresholds[0]):
                val -= self.max_count
            else:
                test -= self.max_count
        return ClassSummary(self.count, train, val, test, self.max_hold, self.nbytes)
