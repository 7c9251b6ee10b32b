import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from transforms import hashing


def test_hash_strings_is_stable_and_slice_independent():
    values = ["cat", "", "dog", "ünïcode", "cat"]
    h = hashing.hash_strings(pa.array(values))
    assert h[0] == h[4] and len(set(h[:4].tolist())) == 4
    sliced = hashing.hash_strings(pa.array(values).slice(2, 2))
    assert np.array_equal(sliced, h[2:4])
    assert np.array_equal(hashing.hash_strings(values), h)


@given(st.lists(st.text(max_size=12), min_size=1, max_size=40), st.integers(1, 39))
def test_hash_strings_does_not_depend_on_batching(values, cut):
    whole = hashing.hash_strings(values)
    cut = min(cut, len(values))
    parts = np.concatenate([hashing.hash_strings(values[:cut]), hashing.hash_strings(values[cut:])])
    assert np.array_equal(whole, parts)


def test_hash_strings_separates_order_and_length():
    h = hashing.hash_strings(["ab", "ba", "a", "a\x00", "abc"])
    assert len(set(h.tolist())) == 5


def test_content_keys_equal_values_equal_keys():
    x = np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, 2.0]], np.float32)
    k = hashing.content_keys(np.array(["a", "a", "a"], object), x)
    assert k[0] == k[1] and k[0] != k[2]
    assert hashing.content_keys(np.array(["b"], object), x[:1])[0] != k[0]


def test_image_content_keys_follow_the_bytes_and_label_and_stay_what_they_were():
    blobs = np.array([b"", b"\x89PNG abc", b"\x89PNG abc", b"\x89PNG abd", bytes(range(256)) * 40], object)
    k = hashing.content_keys_bytes(np.array(["a"] * 5, object), blobs)
    assert k[1] == k[2] and len(set(k.tolist())) == 4
    assert hashing.content_keys_bytes(np.array(["b"], object), blobs[1:2])[0] != k[1]
    parts = np.concatenate([hashing.hash_blobs(blobs[:2]), hashing.hash_blobs(blobs[2:])])
    assert np.array_equal(parts, hashing.hash_blobs(blobs))
    # pinned: image records' keys (and so every decision about them) must not change between versions
    assert hashing.hash_blobs(np.array([b"abc"], object))[0] == np.uint64(0x5995D533D814BBD8)  # blake2b(b"abc", digest_size=8), little-endian


def test_hex_ids_format():
    ids = hashing.hex_ids(np.array([0, 255, 2**64 - 1], np.uint64))
    assert ids.tolist() == ["0000000000000000", "00000000000000ff", "ffffffffffffffff"]


def test_decision_streams_are_independent_and_seeded():
    keys = hashing.hash_strings([str(i) for i in range(20000)])
    a = hashing.decision(keys, 0, hashing.HOLDOUT)
    b = hashing.decision(keys, 0, hashing.COPIES)
    c = hashing.decision(keys, 1, hashing.HOLDOUT)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    # roughly uniform: a 10% threshold selects about 10%
    share = (a < hashing.fraction_threshold(0.1)).mean()
    assert 0.09 < share < 0.11
    assert np.array_equal(a, hashing.decision(keys, 0, hashing.HOLDOUT))
