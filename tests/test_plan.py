import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms import plan

COUNTS = {"a": 100, "b": 30, "c": 7}


@pytest.mark.parametrize(
    "strategy,target,expected",
    [
        ("oversample", None, {"a": 100, "b": 100, "c": 100}),
        ("undersample", None, {"a": 7, "b": 7, "c": 7}),
        ("hybrid", None, {"a": 30, "b": 30, "c": 30}),
        ("hybrid", "mean", {"a": 46, "b": 46, "c": 46}),
        ("oversample", 50, {"a": 100, "b": 50, "c": 50}),
        ("undersample", 50, {"a": 50, "b": 30, "c": 7}),
        ("oversample", 0.5, {"a": 100, "b": 50, "c": 50}),
        ("none", None, COUNTS),
    ],
)
def test_resolve_targets(strategy, target, expected):
    assert plan.resolve_targets(COUNTS, strategy, target) == expected


def test_target_counts_override_named_classes_only():
    got = plan.resolve_targets(COUNTS, "oversample", None, {"c": 40})
    assert got == {"a": 100, "b": 30, "c": 40}
    got = plan.resolve_targets(COUNTS, "oversample", "majority", {"c": 40})
    assert got == {"a": 100, "b": 100, "c": 40}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"strategy": "oversample", "target_counts": {"b": 10}}, "class 'b' has 30 training records and 10 were asked"),
        ({"strategy": "undersample", "target_counts": {"c": 10}}, "class 'c' has 7 training records and 10 were asked"),
        ({"strategy": "cluster", "target_counts": {"zebra": 10}}, r"not in the corpus: \['zebra'\]"),
        ({"strategy": "cluster", "target_counts": {"a": -1}}, "integers >= 1. Received: 'a': -1"),
        ({"strategy": "cluster", "target_counts": {"a": 2.5}}, "integers >= 1"),
        ({"strategy": "balance"}, "Received: 'balance'"),
        ({"strategy": "none", "target": 5}, "^strategy none passes the corpus through: drop target and target_counts"),
    ],
)
def test_resolve_targets_errors_name_the_bad_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan.resolve_targets(COUNTS, **kwargs)


def test_errors_name_the_parameters_and_callers_map_them_to_their_own_names():
    with pytest.raises(plan.SpecError) as e:
        plan.resolve_targets(COUNTS, "cluster", target_counts={"zebra": 10})
    assert str(e.value).startswith("target_counts names classes that are not in the corpus")
    assert e.value.named({"target_counts": "--target_counts"}).startswith("--target_counts names classes")
    with pytest.raises(plan.SpecError, match=r"^target must be one of"):
        plan.parse_target("biggest")


def test_single_class_is_a_clear_error():
    with pytest.raises(ValueError, match="single class .'a'.: there is nothing to balance"):
        plan.resolve_targets({"a": 5}, "cluster")


@pytest.mark.parametrize("spec,match", [("biggest", "Received: 'biggest'"), ("0", "at least 1"), ("1.5", r"\(0, 1\]")])
def test_parse_target_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        plan.parse_target(spec)


def test_parse_target_values():
    assert plan.parse_target("auto") is None
    assert plan.parse_target("Median") == "median"
    assert plan.parse_target("250") == 250
    assert plan.parse_target("0.25") == 0.25


def test_jo_japkowicz_target():
    sizes = {"a": np.array([50, 30, 20]), "b": np.array([4, 1]), "c": np.array([9])}
    plans = plan.plan_quotas(sizes, "cluster")
    # T = max(3*50, 2*4, 1*9) = 150, each class 150, each cluster 150 / K_c
    assert [p.target for p in plans] == [150, 150, 150]
    assert [p.quotas for p in plans] == [(50, 50, 50), (75, 75), (150,)]


def test_split_quota_gives_extras_to_largest_clusters_and_zero_to_empty():
    q = plan.split_quota(10, np.array([1, 0, 5, 3]))
    assert q.tolist() == [3, 0, 4, 3]


@given(st.integers(0, 10_000), st.lists(st.integers(0, 500), min_size=1, max_size=12))
def test_split_quota_properties(total, sizes):
    sizes = np.array(sizes)
    if sizes.sum() == 0:
        return
    q = plan.split_quota(total, sizes)
    assert q.sum() == total
    live = q[sizes > 0]
    assert live.max() - live.min() <= 1
    assert (q[sizes == 0] == 0).all()


@given(st.integers(0, 10_000), st.lists(st.integers(0, 500), min_size=1, max_size=12))
def test_proportional_quota_sums_exactly(total, sizes):
    sizes = np.array(sizes)
    q = plan.proportional_quota(total, sizes)
    assert q.sum() == (total if sizes.sum() else 0)
    assert (q >= 0).all()


@given(
    st.dictionaries(st.sampled_from("abcdef"), st.lists(st.integers(0, 300), min_size=1, max_size=8), min_size=2),
    st.sampled_from(plan.STRATEGIES),
)
def test_plan_class_totals_exact_and_deterministic(sizes, strategy):
    sizes = {k: np.array(v) for k, v in sizes.items() if sum(v) > 0}
    if len(sizes) < 2:
        return
    first = plan.plan_quotas(sizes, strategy)
    assert first == plan.plan_quotas(sizes, strategy)
    for p in first:
        assert sum(p.quotas) == p.target
        if strategy == "cluster":
            live = [q for q, n in zip(p.quotas, p.cluster_sizes, strict=True) if n > 0]
            assert max(live) - min(live) <= 1


def test_boundary_parts_pack_classes_in_order_up_to_a_bounded_number_of_rows():
    from pipelines.passes.plan import BOUNDARY_PART_ROWS
    from transforms.plan import pack_in_order

    def boundary_parts(gathered):
        return pack_in_order(gathered, BOUNDARY_PART_ROWS)

    assert boundary_parts([10] * 5) == [0] * 5  # small classes share one part (one Beam key)
    half = BOUNDARY_PART_ROWS // 2
    assert boundary_parts([half, half, 1, half, 0, 3 * BOUNDARY_PART_ROWS, 5]) == [0, 0, 1, 1, 1, 2, 3]
