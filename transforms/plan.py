"""Balancing plans: from histograms and a strategy spec to exact integer quotas.

Pure Python and numpy; the Beam job and any in-memory caller share it.

A spec is resolved against the class histogram the way imbalanced-learn resolves
``sampling_strategy``: a named target (majority, minority, mean, median, max), a
number of records, a ratio of the majority class, or a dict of class to target;
errors name the bad value and the parameter (`strategy`, `target`, `target_counts`), not
any command's flags: a command maps them to its own names with `SpecError.named`.
Quotas are then split per (class, cluster).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

PARAMETERS = ("strategy", "target", "target_counts")


class SpecError(ValueError):
    """A spec that does not fit the histogram; the message names the parameters it is about.

    Built from a template with {strategy}, {target} or {target_counts} where a parameter
    is named; str() names them as this module does, `named(names)` as a caller does.
    """

    def __init__(self, template: str):
        self.template = template
        super().__init__(self.named({}))

    def named(self, names: Mapping[str, str]) -> str:
        out = self.template
        for p in PARAMETERS:
            out = out.replace("{" + p + "}", names.get(p, p))
        return out


STRATEGIES = ("cluster", "oversample", "undersample", "hybrid", "none")
NAMED_TARGETS = ("auto", "majority", "minority", "mean", "median", "max")
DEFAULT_TARGET = {
    "cluster": "max",
    "oversample": "majority",
    "undersample": "minority",
    "hybrid": "median",
    "none": None,
}


def parse_target(spec: str | int | float | None) -> str | int | float | None:
    """Parses a target: a name, an integer count or a ratio in (0, 1]."""
    if spec is None or isinstance(spec, (int, float)) and not isinstance(spec, bool):
        value = spec
    else:
        text = str(spec).strip().lower()
        if text in NAMED_TARGETS:
            return None if text == "auto" else text
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise SpecError(
                    f"{{target}} must be one of {', '.join(NAMED_TARGETS)}, a record count "
                    f"or a ratio in (0, 1]. Received: {spec!r}"
                ) from None
    if isinstance(value, int) and value < 1:
        raise SpecError(f"{{target}} as a record count must be at least 1. Received: {value}")
    if isinstance(value, float) and not 0 < value <= 1:
        raise SpecError(f"{{target}} as a ratio of the majority class must be in (0, 1]. Received: {value}")
    return value


def _global_target(spec, counts: Mapping[str, int], cluster_max: Mapping[str, int]) -> int:
    sizes = np.array(list(counts.values()), dtype=np.int64)
    if spec == "majority":
        return int(sizes.max())
    if spec == "minority":
        return int(sizes.min())
    if spec == "mean":
        return max(1, int(round(float(sizes.mean()))))
    if spec == "median":
        return max(1, int(round(float(np.median(sizes)))))
    if spec == "max":
        return int(max(cluster_max.values()))
    if isinstance(spec, float):
        return max(1, int(round(spec * int(sizes.max()))))
    return int(spec)


def check_spec(strategy: str, target=None, target_counts: Mapping[str, int] | None = None) -> None:
    """The rules a spec follows whatever the histogram (each checked here only)."""
    if strategy not in STRATEGIES:
        raise SpecError(f"{{strategy}} must be one of {', '.join(STRATEGIES)}. Received: {strategy!r}")
    if strategy == "none" and (target is not None or target_counts):
        raise SpecError("{strategy} none passes the corpus through: drop {target} and {target_counts}, or pick "
                        f"another {{strategy}}. Received: {{target}} {target!r}, {{target_counts}} {target_counts!r}")
    for label, value in (target_counts or {}).items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"{{target_counts}} values must be integers >= 1. Received: {label!r}: {value!r}")


def resolve_targets(
    counts: Mapping[str, int],
    strategy: str,
    target=None,
    target_counts: Mapping[str, int] | None = None,
    cluster_max: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Resolves a strategy spec against the histogram into a target per class.

    Args:
      counts: training records per class (after the hold-out).
      strategy: one of STRATEGIES.
      target: a parsed target (see parse_target); None means the strategy's default.
      target_counts: explicit targets for some classes; the others follow `target`
        when it is given, else keep their size.
      cluster_max: per class, K_c times its largest cluster (the Jo & Japkowicz
        quantity); defaults to the class size (K = 1).

    Returns:
      {class: target}, in the order of `counts`.
    """
    check_spec(strategy, target, target_counts)
    if not counts:
        raise SpecError("The corpus has no valid training records (it is empty, or every record was "
                        "rejected or held out): nothing to balance. Check the input and its label column.")
    bad = {c: n for c, n in counts.items() if n < 1}
    if bad:
        raise SpecError(f"Every class needs at least one training record. Received: {bad}")
    if strategy == "none":
        return dict(counts)
    if len(counts) < 2:
        raise SpecError(
            f"The corpus has a single class ({next(iter(counts))!r}): there is nothing to "
            "balance. Check the label column, or use {strategy} none to shard it as is."
        )
    cluster_max = dict(cluster_max or counts)
    target_counts = dict(target_counts or {})
    unknown = sorted(set(target_counts) - set(counts))
    if unknown:
        raise SpecError(
            f"{{target_counts}} names classes that are not in the corpus: {unknown}. "
            f"The classes are: {sorted(counts)}"
        )
    for label, value in target_counts.items():
        n = counts[label]
        if strategy == "oversample" and value < n:
            raise SpecError(
                f"With over-sampling a class can only grow: class {label!r} has {n} training "
                f"records and {value} were asked."
            )
        if strategy == "undersample" and value > n:
            raise SpecError(
                f"With under-sampling a class can only shrink: class {label!r} has {n} training "
                f"records and {value} were asked."
            )
    use_global = target is not None or not target_counts
    spec = DEFAULT_TARGET[strategy] if target is None else target
    total = _global_target(spec, counts, cluster_max) if use_global else None
    targets = {}
    for label, n in counts.items():
        if label in target_counts:
            targets[label] = target_counts[label]
        elif total is None:
            targets[label] = n
        elif strategy == "oversample":
            targets[label] = max(n, total)
        elif strategy == "undersample":
            targets[label] = min(n, total)
        else:
            targets[label] = total
    return targets


def split_quota(total: int, sizes: np.ndarray) -> np.ndarray:
    """Splits a class target over its non-empty clusters by largest remainder.

    Every non-empty cluster gets total // K or one more; the extra units go to the
    largest clusters (ties: lower cluster id), so fewer rows are duplicated. Empty
    clusters get 0. The quotas sum to `total` exactly.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    quota = np.zeros(len(sizes), dtype=np.int64)
    live = np.flatnonzero(sizes > 0)
    if len(live) == 0:
        if total:
            raise ValueError("a class with a positive target has no records to resample")
        return quota
    base, extra = divmod(int(total), len(live))
    quota[live] = base
    order = live[np.lexsort((live, -sizes[live]))]
    quota[order[:extra]] += 1
    return quota


@dataclass(frozen=True)
class ClassPlan:
    label: str
    index: int
    train_input: int
    target: int
    cluster_sizes: tuple[int, ...]
    quotas: tuple[int, ...]


def plan_quotas(
    cluster_sizes: Mapping[str, np.ndarray],
    strategy: str,
    target=None,
    target_counts: Mapping[str, int] | None = None,
) -> list[ClassPlan]:
    """Integer quotas per (class, cluster); class order follows `cluster_sizes`.

    For `cluster` each class's target is split evenly over its non-empty clusters
    (Jo & Japkowicz); the random strategies and `none` resample each class as one
    group, so their cluster quotas are proportional shares of the class target,
    again by largest remainder.
    """
    sizes = {c: np.asarray(s, dtype=np.int64) for c, s in cluster_sizes.items()}
    counts = {c: int(s.sum()) for c, s in sizes.items()}
    cluster_max = {c: int((s > 0).sum() * s.max()) if s.sum() else 0 for c, s in sizes.items()}
    targets = resolve_targets(counts, strategy, target, target_counts, cluster_max)
    plans = []
    for index, (label, s) in enumerate(sizes.items()):
        total = targets[label]
        if strategy == "cluster":
            quota = split_quota(total, s)
        elif strategy == "none":
            quota = s.copy()
        else:
            quota = proportional_quota(total, s)
        plans.append(
            ClassPlan(label, index, counts[label], total, tuple(int(v) for v in s), tuple(int(v) for v in quota))
        )
    return plans


def proportional_quota(total: int, sizes: np.ndarray) -> np.ndarray:
    """Splits `total` in proportion to `sizes` by largest remainder (sums exactly)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    n = int(sizes.sum())
    if n == 0:
        return np.zeros(len(sizes), np.int64)
    exact = sizes * int(total)
    quota = exact // n
    remainder = exact - quota * n
    short = int(total) - int(quota.sum())
    order = np.lexsort((np.arange(len(sizes)), -remainder))
    quota[order[:short]] += 1
    return quota


def pack_in_order(sizes, limit: int, max_members: int | None = None) -> list[int]:
    """Consecutive items into bins, in order: a new bin when the next item would take the
    current one past `limit` (of size) or past `max_members` items. Returns each item's
    bin, from 0."""
    bins, current, size, members = [], 0, 0, 0
    for n in sizes:
        if (size and size + n > limit) or (max_members and members >= max_members):
            current, size, members = current + 1, 0, 0
        bins.append(current)
        size, members = size + n, members + 1
    return bins


def shard_count(records: int, row_bytes: int, target_bytes: int, override: int | None = None) -> int:
    """Shards for a split: `override`, else enough to keep each near target_bytes."""
    if override:
        return int(override)
    return max(1, math.ceil(records * row_bytes / target_bytes))
