"""Combiners without Beam: one accumulator, many merged, merged in another order."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms import hashing
from transforms.sampling import BottomM
from transforms.stats import TEST, TRAIN, VAL, ClassStats, HoldoutRule


def rows(n, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.array([f"r{i}" for i in range(n)], dtype=object)
    return hashing.hash_strings(list(ids)), ids, rng.normal(size=(n, 3)).astype(np.float32)


def test_bottom_m_same_sample_whatever_the_merge_order():
    keys, ids, x = rows(500)
    whole = BottomM(40, 3).add(keys, x).extract()
    parts = [BottomM(40, 3).add(keys[s], x[s]) for s in np.array_split(np.arange(500), 5)]
    for perm in itertools.islice(itertools.permutations(parts), 0, 120, 17):
        acc = BottomM(40, 3)
        for p in perm:
            acc.merge(BottomM(40, 3).merge(p))
        got = acc.extract()
        assert np.array_equal(got[0], whole[0]) and np.array_equal(got[1], whole[1])
    assert np.all(np.diff(whole[0].astype(np.float64)) >= 0)
    assert len(whole[0]) == 40 and set(whole[0]) == set(np.sort(keys)[:40])


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 400), st.integers(1, 6), st.floats(0, 0.9), st.floats(0, 0.09))
def test_class_stats_split_independent(n, parts, val, test):
    keys, ids, x = rows(n, n)
    rule = HoldoutRule(7, val, test)
    one = ClassStats(rule).add(keys).extract()
    acc = ClassStats(rule)
    for s in reversed(np.array_split(np.arange(n), parts)):
        if len(s):
            acc.merge(ClassStats(rule).add(keys[s]))
    many = acc.extract()
    assert one == many
    # the counts are what the rule's split gives record by record, and train is never empty
    split = rule.split(keys, one.max_hold)
    assert (one.train, one.val, one.test) == tuple(int((split == s).sum()) for s in (TRAIN, VAL, TEST))
    assert one.train >= 1 and one.count == n


def test_val_and_test_are_disjoint_bands_of_one_hash():
    keys, ids, x = rows(20000, 20000)
    split = HoldoutRule(3, 0.1, 0.2).split(keys, -1)
    assert abs((split == VAL).mean() - 0.1) < 0.01 and abs((split == TEST).mean() - 0.2) < 0.01
    # the val records are the same with or without a test split: test takes from train only
    assert np.array_equal(split == VAL, HoldoutRule(3, 0.1, 0.0).split(keys, -1) == VAL)
    with pytest.raises(ValueError, match="val_fraction and test_fraction"):
        HoldoutRule(0, 0.6, 0.5)


@pytest.mark.parametrize("val,test", [(0.99, 0.0), (0.0, 0.99), (0.5, 0.49)])
def test_single_record_class_stays_in_train(val, test):
    keys, ids, x = rows(1)
    rule = HoldoutRule(0, val, test)
    s = ClassStats(rule).add(keys).extract()
    assert (s.train, s.val, s.test) == (1, 0, 0)
    assert (rule.split(keys, s.max_hold) == TRAIN).all()


def test_class_size_aware_threshold_keeps_the_exact_bottom_m():
    from pipelines.passes.clustering import sample_fraction

    n, m = 50_000, 1_000
    keys = hashing.hash_strings([f"k{i}" for i in range(n)])
    u = hashing.decision(keys, 0, hashing.SAMPLE)
    x = np.arange(n, dtype=np.float32)[:, None]
    thr = hashing.fraction_threshold(sample_fraction(m, n))
    candidates = u < thr
    assert m < candidates.sum() < 1.5 * m  # ~m + 10 sd leave the workers
    parts = np.array_split(np.flatnonzero(candidates), 7)
    acc = BottomM(m, 1)
    for p in parts:
        acc.merge(BottomM(m, 1).add(u[p], x[p]))
    got_keys, _ = acc.extract()
    assert np.array_equal(got_keys, np.sort(u)[:m])  # the exact bottom-m of the whole class
    assert sample_fraction(m, 10) == 1.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=300), st.sampled_from([(0.1, 0.0), (0.3, 0.2), (0.0, 0.5)]))
def test_many_classes_at_once_equal_one_class_at_a_time(classes, fractions):
    """ClassStats.of_classes and HoldoutRule.split_classes (a whole batch, hashed once) give what
    ClassStats.add and HoldoutRule.split give class by class: the passes use them on batches of
    thousands of classes."""
    rule = HoldoutRule(seed=5, val_fraction=fractions[0], test_fraction=fractions[1])
    codes = np.array(classes)
    keys = np.random.default_rng(len(classes)).integers(0, 1 << 62, len(codes)).astype(np.uint64)
    keys[len(keys) // 2:] = keys[: len(keys) - len(keys) // 2]  # repeated keys: ties on the largest hash
    row_bytes = (codes + 1) * 10
    every = ClassStats.of_classes(rule, codes, 7, keys, row_bytes)
    max_holds = []
    for c in range(7):
        one = ClassStats(rule).add(keys[codes == c], nbytes=int(row_bytes[codes == c].sum())) if (codes == c).any() \
            else ClassStats(rule)
        assert vars(every[c]) == vars(one)
        max_holds.append(one.max_hold)
    split = rule.split_classes(keys, codes, max_holds)
    for c in range(7):
        np.testing.assert_array_equal(split[codes == c], rule.split(keys[codes == c], max_holds[c]))
