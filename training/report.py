"""RUN/report.png: per-class F1 and per-class sample share over epochs; confusion-matrix PNGs."""

from __future__ import annotations

from transforms import storage
from transforms.plots import MAX_TICK_LABELS, label_classes, png_bytes


def save_png(fig, path: str) -> None:
    """The figure as PNG into the run folder (local), under a temporary name until complete."""
    storage.write_bytes(path, png_bytes(fig))


def write_history_png(history: list[dict], path: str) -> None:
    from matplotlib.figure import Figure

    if not history:
        return
    epochs = [h["epoch"] for h in history]
    labels = list(history[0]["classes"])
    fig = Figure(figsize=(11, 4.2))
    a, b = fig.subplots(1, 2, sharex=True)
    if len(labels) > MANY:
        _summary_lines(a, b, history, epochs, labels)
        save_png(fig, path)
        return
    for label in labels:
        a.plot(epochs, [h["classes"][label]["f1"] if h["classes"][label]["f1"] is not None else float("nan")
                        for h in history], marker="o", ms=3, label=label)
        b.plot(epochs, [h["classes"][label]["share"] for h in history], marker="o", ms=3, label=label)
    a.plot(epochs, [h["val_macro_f1"] for h in history], "k--", lw=2, label="macro")
    a.set(title="val F1 per class", xlabel="epoch", ylim=(0, 1))
    b.set(title="share of the epoch's samples", xlabel="epoch")
    if len(labels) <= 30:  # a legend of more classes hides the plot
        a.legend(fontsize=7, ncol=2)
    save_png(fig, path)


MANY = 40  # past this many classes the plot shows quantiles and the worst classes, not a line per class


def _summary_lines(a, b, history, epochs, labels) -> None:
    """F1 and shares as the 10th / 50th / 90th percentile over classes, with the five classes
    whose last F1 is lowest, and the macro F1."""
    import numpy as np

    def per_class(key):
        return np.array([[np.nan if h["classes"][k][key] is None else h["classes"][k][key] for k in labels]
                         for h in history], np.float64)

    f1, share = per_class("f1"), per_class("share")
    for ax, values in ((a, f1), (b, share)):
        lo, mid, hi = (np.nanpercentile(values, q, axis=1) for q in (10, 50, 90))
        ax.fill_between(epochs, lo, hi, alpha=0.25, color="tab:blue", label="10th-90th percentile")
        ax.plot(epochs, mid, color="tab:blue", lw=2, label="median class")
    last = np.where(np.isnan(f1[-1]), np.inf, f1[-1])
    for i in np.argsort(last, kind="stable")[:5]:
        if np.isfinite(last[i]):
            a.plot(epochs, f1[:, i], lw=1, marker="o", ms=2, label=labels[i][:20])
            b.plot(epochs, share[:, i], lw=1, marker="o", ms=2)
    a.plot(epochs, [h["val_macro_f1"] for h in history], "k--", lw=2, label="macro")
    a.set(title=f"val F1 over {len(labels)} classes (the 5 worst drawn)", xlabel="epoch", ylim=(0, 1))
    b.set(title="share of the epoch's samples", xlabel="epoch", yscale="log")
    a.legend(fontsize=7)


def write_confusion_png(cm, labels: list[str], path: str, title: str) -> None:
    import numpy as np
    from matplotlib.figure import Figure

    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(5, 0.45 * min(len(labels), MAX_TICK_LABELS) + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    label_classes(ax, labels, "x")
    label_classes(ax, labels, "y")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if len(labels) <= 30:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    save_png(fig, path)
