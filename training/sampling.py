"""Dynamic sampling: from last epoch's per-class val scores to next epoch's class shares.

Pure numpy. Two rules (`rule`):

- `precision_recall` (training.fit's default): a controller on each class's operating point. A
  class predicted too rarely (precision above recall on val) gets more of the next
  epoch's draws, one predicted too often (recall above precision) fewer:
  weight_c *= exp(rate * (P_c - R_c) * n_c / (n_c + shrink)), shares = weights / sum,
  starting uniform. With shares left uncorrected (no importance weights), a class's
  share acts as its prior in the loss, so the controller moves the head's bias toward
  the point where each class's precision and recall meet, which is about where its F1
  peaks. `shrink` is a pseudo-count: a class with n_c val records moves by
  n_c / (n_c + shrink) of the step, so the 0-3 val records of a rare class do not swing
  it on noise (a class without val records keeps its weight).
- `f1` (Pouyanfar et al. 2018): class c's share is proportional to 1 - F1_c; uniform in
  the first epoch and whenever all F1 are equal. `mix` blends these shares with uniform
  ones (shares = (1 - mix) * uniform + mix * driven; mix = 1 is the paper's rule) and
  `smoothing` averages the F1s over epochs (exponential moving average) first. 1 - F1
  cannot tell an over-predicted class (low precision) from an under-predicted one (low
  recall): it raises the share of both.

With both rules `min_share` is a floor no class goes under. docs/BENCHMARKS.md has the
measurements behind the default.
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


RULES = ("precision_recall", "f1")


def precision_recall_step(precision: np.ndarray, recall: np.ndarray, support: np.ndarray, rate: float,
                          shrink: float) -> np.ndarray:
    """The controller's log-step per class: rate * (P - R) * n / (n + shrink); 0 without a score.

    `support`: val records per class (n). A class never predicted has precision 0, so its
    step is -rate * R * ...: with recall 0 too (nothing right), the step is 0.
    """
    p = np.asarray(precision, np.float64)
    r = np.asarray(recall, np.float64)
    n = np.asarray(support, np.float64)
    gap = np.where(np.isfinite(p) & np.isfinite(r), p - r, 0.0)
    trust = n / (n + shrink) if shrink > 0 else (n > 0).astype(np.float64)
    return rate * gap * trust


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
    rule: str = "f1"  # f1 | precision_recall (see the module docstring; training.fit defaults to the latter)
    rate: float = 2.0  # precision_recall: step size of the log-weights
    shrink: float = 50.0  # precision_recall: pseudo-count of val records
    log_weights: list[float] | None = None  # precision_recall: the controller's state

    def __post_init__(self):
        if self.mode not in ("dynamic", "balanced", "none"):
            raise ValueError(f"--sampling must be dynamic, balanced or none. Received: {self.mode!r}")
        if self.rule not in RULES:
            raise ValueError(f"--dynamic_rule must be one of {', '.join(RULES)}. Received: {self.rule!r}")
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"--f1_smoothing must be in [0, 1). Received: {self.smoothing}")
        if not self.rate > 0 or not self.shrink >= 0:
            raise ValueError(f"--dynamic_rate must be > 0 and --dynamic_shrink >= 0. Received: {self.rate}, "
                             f"{self.shrink}")
        check_min_share(self.min_share, self.classes)
        if not self.shares:
            self.shares = self.initial().tolist()

    def initial(self) -> np.ndarray:
        if self.mode == "none" and self.prior is not None:
            p = np.asarray(self.prior, np.float64)
            return p / p.sum()
        return np.full(self.classes, 1.0 / self.classes)

    def update(self, f1: np.ndarray, precision: np.ndarray | None = None, recall: np.ndarray | None = None,
               support: np.ndarray | None = None) -> np.ndarray:
        """Takes an epoch's per-class val F1 (and precision, recall, val records, which the
        precision_recall rule needs); returns (and keeps) the next epoch's shares.

        A class without a score (NaN: no val records) counts as average (f1) or stays
        where it is (precision_recall).
        """
        if self.mode == "dynamic" and self.rule == "precision_recall":
            if precision is None or recall is None or support is None:
                raise ValueError("the precision_recall rule needs per-class precision, recall and support")
            step = precision_recall_step(precision, recall, support, self.rate, self.shrink)
            logw = np.zeros(self.classes) if self.log_weights is None else np.asarray(self.log_weights)
            logw = logw + step
            logw = logw - logw.mean()  # only ratios matter; keeps the numbers bounded
            self.log_weights = logw.tolist()
            w = np.exp(logw - logw.max())
            self.shares = apply_floor(w / w.sum(), self.min_share).tolist()
            return np.asarray(self.shares)
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
                "prior": self.prior, "smoothed": self.smoothed, "shares": self.shares, "rule": self.rule,
                "rate": self.rate, "shrink": self.shrink, "log_weights": self.log_weights}

    @classmethod
    def from_state(cls, classes: int, state: dict) -> DynamicSampler:
        return cls(classes=classes, **state)
