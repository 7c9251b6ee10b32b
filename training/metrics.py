"""Per-class precision, recall and F1 from labels and predictions (plain numpy)."""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(np.asarray(y_true) * classes + np.asarray(y_pred), minlength=classes * classes).reshape(
        classes, classes)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """precision, recall, f1, support per class; 0 where undefined (no predictions or no support)."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def cross_entropy(probs: np.ndarray, y_true: np.ndarray) -> float:
    p = np.clip(probs[np.arange(len(y_true)), y_true], 1e-7, 1.0)
    return float(-np.log(p).mean()) if len(p) else 0.0
