"""Per-class precision, recall and F1 from labels and predictions (plain numpy)."""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(np.asarray(y_true) * classes + np.asarray(y_pred), minlength=classes * classes).reshape(
        classes, classes)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """precision, recall, f1, support per class.

    Precision is 0 for a class never predicted; recall and F1 are NaN for a class with
    no val records (it has no score: macro averages skip it, the sampler treats it as average).
    """
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    recall[support == 0] = np.nan
    f1[support == 0] = np.nan
    precision[(support == 0) & (predicted == 0)] = np.nan  # never in val, never predicted
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def macro(values: np.ndarray) -> float:
    """Mean over classes that have a value (NaN: no val records)."""
    v = np.asarray(values, np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else 0.0


def json_number(x: float) -> float | None:
    """NaN as null, for JSON."""
    return None if not np.isfinite(x) else float(x)


def cross_entropy(probs: np.ndarray, y_true: np.ndarray) -> float:
    p = np.clip(probs[np.arange(len(y_true)), y_true], 1e-7, 1.0)
    return float(-np.log(p).mean()) if len(p) else 0.0
