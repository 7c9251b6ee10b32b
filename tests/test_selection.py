"""The bucketed exact selection must equal a full sort, however the rows are split."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms import hashing, selection


def distributed_copies(u, ids, quota, bits, parts):
    """What the job does: per-part histograms, summed; rule; boundary settled together."""
    pieces = np.array_split(np.arange(len(u)), parts)
    hist = sum(selection.bucket_histogram(u[p], bits) for p in pieces)
    rule = selection.group_rule(hist, bits, quota)
    copies = np.zeros(len(u), np.int64)
    pending_rows = []
    for p in pieces:
        c, pending = selection.copies_by_rule(u[p], rule)
        copies[p[~pending]] = c[~pending]
        pending_rows.append(p[pending])
    pend = np.concatenate(pending_rows)
    if len(pend):
        copies[pend] = selection.settle_boundary(u[pend], ids[pend], rule)
    return copies, rule


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 3000), st.integers(0, 9000), st.integers(0, 8), st.integers(1, 5), st.integers(0, 2**31))
def test_bucketed_selection_equals_full_sort(n, quota, bits, parts, seed):
    keys = hashing.hash_strings([f"{seed}-{i}" for i in range(n)])
    u = hashing.decision(keys, seed, hashing.COPIES)
    ids = np.array([f"{seed}-{i}" for i in range(n)])
    got, _ = distributed_copies(u, ids, quota, bits, parts)
    want = selection.exact_copies(u, ids, quota)
    assert np.array_equal(got, want)
    assert got.sum() == quota


def test_duplicate_hashes_still_give_exact_counts():
    u = np.array([5, 5, 5, 5, 9, 9, 1], np.uint64) << np.uint64(40)
    ids = np.array(["x", "x", "x", "x", "y", "y", "z"])
    got, rule = distributed_copies(u, ids, 3, 2, 3)
    assert got.sum() == 3 and got[6] == 1


def test_boundary_is_small():
    n = 200_000
    u = hashing.decision(np.arange(n, dtype=np.uint64), 0, hashing.COPIES)
    bits = selection.bucket_bits(n)
    rule = selection.group_rule(selection.bucket_histogram(u, bits), bits, 123_457)
    assert rule.in_boundary < 4 * selection.BUCKET_TARGET
