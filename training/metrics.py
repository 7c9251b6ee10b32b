"""Per-class precision, recall and F1 from labels and predictions (plain numpy), and their report."""

from __future__ import annotations

import os

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


def class_table(pc: dict[str, np.ndarray], labels: list[str]) -> dict[str, dict]:
    """{label: {f1, precision, recall, support}} from `per_class` (NaN as null)."""
    return {label: {"f1": json_number(pc["f1"][i]), "precision": json_number(pc["precision"][i]),
                    "recall": json_number(pc["recall"][i]), "support": int(pc["support"][i])}
            for i, label in enumerate(labels)}


class Tally:
    """Predictions against true labels, batch by batch (memory: the confusion matrix).

    True labels are names, matched to the model's classes by name; a record whose label
    the model never saw is not scored (no class of the model can be right for it): it is
    counted under `unseen`, with what the model predicted for it.
    """

    def __init__(self, labels: list[str]):
        self.labels = list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.cm = np.zeros((len(labels), len(labels)), np.int64)
        self.unseen: dict[str, np.ndarray] = {}  # label -> predictions per model class

    def add(self, true_names, pred: np.ndarray) -> None:
        names = np.asarray(true_names, object)
        pred = np.asarray(pred, np.int64)
        true = np.fromiter((self.index.get(n, -1) for n in names), np.int64, len(names))
        known = true >= 0
        self.cm += confusion(true[known], pred[known], len(self.labels))
        for name in set(names[~known].tolist()):
            counts = self.unseen.setdefault(name, np.zeros(len(self.labels), np.int64))
            counts += np.bincount(pred[names == name], minlength=len(self.labels))

    def report(self) -> dict:
        """records (scored), macro_f1, accuracy, classes, confusion, unseen."""
        pc = per_class(self.cm)
        scored = int(self.cm.sum())
        return {"records": scored, "macro_f1": macro(pc["f1"]),
                "accuracy": float(np.trace(self.cm) / scored) if scored else 0.0,
                "classes": class_table(pc, self.labels), "confusion": self.cm.tolist(),
                "unseen": {name: {"records": int(c.sum()),
                                  "predicted": {self.labels[i]: int(c[i]) for i in np.flatnonzero(c)}}
                           for name, c in sorted(self.unseen.items())}}


SHOWN_CLASSES = 40  # past this many classes, printed reports and epoch lines summarise


def format_report(report: dict, limit: int | None = None, full: str | None = None) -> str:
    """The per-class table of a `Tally.report` (or a history's test entry), as printed.

    With more than `limit` classes: the `limit // 2` largest classes (by support), the
    `limit // 2` worst by F1, a line for the rest (naming `full`, where the whole table
    was written), then the macro row."""
    labels = list(report["classes"])
    shown = labels
    if limit and len(labels) > limit:
        by_size = sorted(labels, key=lambda k: (-report["classes"][k]["support"], k))[:limit // 2]
        scored = [k for k in labels if report["classes"][k]["f1"] is not None and k not in by_size]
        worst = sorted(scored, key=lambda k: (report["classes"][k]["f1"], k))[:limit // 2]
        shown = by_size + worst
    width = max(5, *(len(x) for x in shown))

    def num(v, w):
        return f"{v:{w}.3f}" if v is not None else f"{'-':>{w}}"

    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    for i, label in enumerate(shown):
        if shown is not labels and i == limit // 2:
            lines.append(f"{'...':<{width}}  (the {limit // 2} largest classes above; the worst by F1 below)")
        c = report["classes"][label]
        lines.append(f"{label:<{width}}  {num(c['precision'], 9)}  {num(c['recall'], 6)}  {num(c['f1'], 5)}  "
                     f"{c['support']:7d}")
    if shown is not labels:
        where = f": all of them in {full}" if full else ""
        lines.append(f"({len(labels) - len(shown)} more classes not shown{where})")
    mean = {k: macro([np.nan if c[k] is None else c[k] for c in report["classes"].values()])
            for k in ("precision", "recall")}
    lines.append(f"{'macro':<{width}}  {mean['precision']:9.3f}  {mean['recall']:6.3f}  "
                 f"{report['macro_f1']:5.3f}  {report['records']:7d}   accuracy {report['accuracy']:.3f}")
    if any(c["support"] == 0 for c in report["classes"].values()):
        lines.append("(- : no records of the class here; macro averages skip it)")
    for name, u in report.get("unseen", {}).items():
        top = ", ".join(f"{k} {n}" for k, n in sorted(u["predicted"].items(), key=lambda kv: -kv[1])[:3])
        lines.append(f"not scored: {u['records']} records labelled {name!r}, a class the model never saw "
                     f"(predicted: {top})")
    return "\n".join(lines)


def full_table(folder: str, name: str, report: dict) -> str | None:
    """With more than SHOWN_CLASSES classes, the whole table into folder/name (returned);
    None otherwise (the printed table is whole)."""
    if len(report["classes"]) <= SHOWN_CLASSES:
        return None
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(format_report(report) + "\n")
    return path
