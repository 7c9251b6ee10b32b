"""Losses: cross-entropy, class-weighted, focal, class-balanced (Cui et al. 2019).

Class weights come from the per-class training counts before resampling; with any
sampling mode they combine into a hybrid (sampling and loss both correcting).
"""

from __future__ import annotations

import keras
import numpy as np

LOSSES = ("ce", "weighted", "focal", "class_balanced")


def class_weights(loss: str, counts: list[int], beta: float = 0.999) -> dict[int, float] | None:
    """Per-class weights (mean 1) for `weighted` (inverse frequency) and `class_balanced`."""
    n = np.asarray(counts, np.float64)
    if loss == "weighted":
        w = 1.0 / np.maximum(n, 1)
    elif loss == "class_balanced":
        if not 0 <= beta < 1:
            raise ValueError(f"--cb_beta must be in [0, 1). Received: {beta}")
        w = (1.0 - beta) / (1.0 - np.power(beta, np.maximum(n, 1)))  # 1 / effective number
    else:
        return None
    w = w * len(w) / w.sum()
    return {i: float(v) for i, v in enumerate(w)}


def make_loss(loss: str, gamma: float = 2.0):
    if loss not in LOSSES:
        raise ValueError(f"--loss must be one of {', '.join(LOSSES)}. Received: {loss!r}")
    if loss == "focal":
        return keras.losses.CategoricalFocalCrossentropy(alpha=0.25, gamma=gamma)
    return keras.losses.CategoricalCrossentropy()
