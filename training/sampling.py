"""Dynamic sampling: from last epoch's per-class scores to next epoch's class shares.

Pure numpy, apart from Keras. Pouyanfar et al. (2018): after each epoch, class c's
share of the next epoch is proportional to 1 - F1_c on held-out data; uniform in the
first epoch and whenever all F1 are equal. Two knobs keep classes that do well from
starving: `mix` blends the F1-driven shares with uniform ones
(shares = (1 - mix) * uniform + mix * driven; mix = 1 is the paper's rule) and
`min_share` is a floor no class goes under. `smoothing` averages the F1s over epochs
(exponential moving average) before they drive the shares, so one noisy epoch does not
swing the mix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def check_min_share(min_share: float, classes: int) -> None:
    if not 0 <= min_share <= 1 / classes:
        raise ValueError(
            f"--min_share must be in [0, 1/classes] = [0, {1 / classes:.4f}] for {classes} classes. "
            f"Received: {min_share}"
        )


def apply_floor(shares: np.ndarray, floor: float) -> np.ndarray:
    """Raises shares under `floor` to it and scales the others down; sums to 1."""
    s = np.asarray(shares, np.float64)
    s = s / s.sum()
    fixed = np.zeros(len(s), bool)
    for _ in range(len(s)):
        low = ~fixed & (s < floor)
        if not low.any():
            break
        fixed |= low
        free = ~fixed
        rest = 1.0 - floor * fixed.sum()
        s = np.where(fixed, floor, s)
        if free.any():
            s[free] = s[free] / s[free].sum() * rest
    return s


def driven_shares(scores: np.ndarray | None) -> np.ndarray | None:
    """Shares proportional to 1 - score; None when there is no signal (all equal)."""
    if scores is None:
        return None
    scores = np.asarray(scores, np.float64)
    need = 1.0 - scores
    if np.allclose(need, need[0]) or need.sum() <= 0:
        return None
    return need / need.sum()


def next_shares(scores: np.ndarray | None, classes: int, min_share: float = 0.0, mix: float = 1.0) -> np.ndarray:
    """Class shares for the next epoch from per-class scores in [0, 1] (e.g. F1)."""
    check_min_share(min_share, classes)
    if not 0 <= mix <= 1:
        raise ValueError(f"--dynamic_mix must be in [0, 1]. Received: {mix}")
    uniform = np.full(classes, 1.0 / classes)
    driven = driven_shares(scores)
    shares = uniform if driven is None else (1 - mix) * uniform + mix * driven
    return apply_floor(shares, min_share)


def sample_weights(shares: np.ndarray, class_weights: np.ndarray | None = None, correct: bool = False) -> np.ndarray:
    """Per-class weight of each training sample.

    `class_weights` come from the loss (weighted, class-balanced). With `correct`, a
    class drawn with share s_c is also weighted by (1/C) / s_c: the loss then sees the
    classes as balanced while the sampling still spends more draws on the hard ones, so
    the head's bias is not pulled toward the classes sampled most (importance weighting).
    Normalised so that the expected weight of a sample is 1.
    """
    s = np.asarray(shares, np.float64)
    w = np.ones(len(s)) if class_weights is None else np.asarray(class_weights, np.float64)
    if correct:
        w = w * (1.0 / len(s)) / np.maximum(s, 1e-12)
    return w / float((s * w).sum())


def epoch_counts(shares: np.ndarray, budget: int) -> np.ndarray:
    """Samples per class for an epoch of `budget` samples (largest remainder; sums exactly)."""
    exact = np.asarray(shares, np.float64) * budget
    counts = np.floor(exact).astype(np.int64)
    short = int(budget - counts.sum())
    order = np.lexsort((np.arange(len(exact)), -(exact - counts)))
    counts[order[:short]] += 1
    return counts


@dataclass
class DynamicSampler:
    """The sampler's state across epochs: what a resumed run must restore."""

    classes: int
    mode: str = "dynamic"  # dynamic | balanced | none
    min_share: float = 0.0
    mix: float = 1.0
    smoothing: float = 0.0  # weight of the past in the F1 average (0: last epoch only)
    prior: list[float] | None = None  # shares of `none`: the shards as written
    smoothed: list[float] | None = None
    shares: list[float] = field(default_factory=list)

    def __post_init__(self):
        if self.mode not in ("dynamic", "balanced", "none"):
            raise ValueError(f"--sampling must be dynamic, balanced or none. Received: {self.mode!r}")
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"--f1_smoothing must be in [0, 1). Received: {self.smoothing}")
        check_min_share(self.min_share, self.classes)
        if not self.shares:
            self.shares = self.initial().tolist()

    def initial(self) -> np.ndarray:
        if self.mode == "none" and self.prior is not None:
            p = np.asarray(self.prior, np.float64)
            return p / p.sum()
        return np.full(self.classes, 1.0 / self.classes)

    def update(self, f1: np.ndarray) -> np.ndarray:
        """Takes an epoch's per-class F1; returns (and keeps) the next epoch's shares.

        A class without a score (NaN: no val records) counts as average.
        """
        f1 = np.asarray(f1, np.float64)
        if not np.isfinite(f1).all():
            f1 = np.where(np.isfinite(f1), f1, np.nanmean(f1) if np.isfinite(f1).any() else 0.0)
        if self.smoothed is None:
            self.smoothed = f1.tolist()
        else:
            self.smoothed = (self.smoothing * np.asarray(self.smoothed) + (1 - self.smoothing) * f1).tolist()
        if self.mode == "dynamic":
            self.shares = next_shares(np.asarray(self.smoothed), self.classes, self.min_share, self.mix).tolist()
        else:
            self.shares = self.initial().tolist()
        return np.asarray(self.shares)

    def state(self) -> dict:
        return {"mode": self.mode, "min_share": self.min_share, "mix": self.mix, "smoothing": self.smoothing,
                "prior": self.prior, "smoothed": self.smoothed, "shares": self.shares}

    @classmethod
    def from_state(cls, classes: int, state: dict) -> DynamicSampler:
        return cls(classes=classes, **state)
