"""Plot helpers shared by the jobs' and the trainer's PNGs (matplotlib's object API, no pyplot,
no Beam)."""

from __future__ import annotations

import io

MAX_TICK_LABELS = 60  # class names written along an axis; with more classes, every k-th


def label_classes(ax, labels: list[str], axis: str = "x") -> None:
    """Class names as tick labels: each one up to MAX_TICK_LABELS classes, else every k-th
    (a thousand names cannot be read, and drawing them costs seconds)."""
    import numpy as np

    step = -(-len(labels) // MAX_TICK_LABELS) if labels else 1
    ticks = np.arange(0, len(labels), step)
    names = [labels[i] for i in ticks]
    if axis == "x":
        ax.set_xticks(ticks, names, rotation=90 if len(labels) > 12 else 0)
    else:
        ax.set_yticks(ticks, names)


def png_bytes(fig) -> bytes:
    """The figure, laid out, as PNG bytes (no Beam here: the trainer draws with it too)."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()
