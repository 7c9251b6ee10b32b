"""The rank plot that report.png and histogram.png switch to past RANK_PLOT_ABOVE classes.

Classes sorted by size (train input, largest first); x = rank (log scale past LOG_RANK_ABOVE
classes), y = records (log scale); a line before and after, and each one's per-class spread of
cluster sizes (smallest..largest) as a band. One figure size for any class count, no class names,
one artist per series (100,000 classes draw in well under a second).
"""

from __future__ import annotations

from transforms.plots import MAX_TICK_LABELS

RANK_PLOT_ABOVE = MAX_TICK_LABELS  # classes; up to this many, a bar per class, named
LOG_RANK_ABOVE = 1000  # classes; past this many, rank on a log axis too
RANK_FIGSIZE = (10, 5)  # inches: 900 x 450 pixels at png_bytes' 90 dpi


def cluster_spread(classes: list[dict], key: str) -> tuple:
    """Per class, the smallest and largest cluster[key] over clusters where it is > 0, as two float
    arrays (NaN where a class has no such cluster: the band leaves a gap)."""
    import numpy as np

    counts = np.fromiter((len(c.get("clusters", ())) for c in classes), int, len(classes))
    flat = np.fromiter((x.get(key, 0) for c in classes for x in c.get("clusters", ())), float, int(counts.sum()))
    flat[flat <= 0] = np.nan  # fmin and fmax skip these
    lo, hi = np.full(len(classes), np.nan), np.full(len(classes), np.nan)
    some = counts > 0
    if some.any():  # classes without clusters are empty segments: the others' starts cut `flat` exactly
        starts = (np.cumsum(counts) - counts)[some]
        lo[some] = np.fmin.reduceat(flat, starts)
        hi[some] = np.fmax.reduceat(flat, starts)
    return lo, hi


def rank_figure(before: tuple, after: tuple | None = None, bands: tuple = (), by: str = "train input"):
    """A Figure with one rank plot: classes sorted by `before` (largest first), which counts `by`.

    before, after: (label, per-class counts); bands: (label, per-class low, per-class high), each
    drawn in the colour of the line it goes with (the first with `before`, the second with `after`).
    Counts of 0 leave gaps (a log axis has no 0).
    """
    import numpy as np
    from matplotlib.figure import Figure

    first = np.asarray(before[1], float)
    n = len(first)
    order = np.argsort(-first, kind="stable")  # ties keep the classes' own order
    rank = np.arange(1, n + 1)

    def ranked(values):
        v = np.asarray(values, float)[order]
        return np.where(v > 0, v, np.nan)

    fig = Figure(figsize=RANK_FIGSIZE)
    ax = fig.subplots()
    lines = [before] + ([after] if after is not None else [])
    colors = ["C0", "C1"]
    for (label, lo, hi), color in zip(bands, colors, strict=False):
        ax.fill_between(rank, ranked(lo), ranked(hi), color=color, alpha=0.2, linewidth=0, label=label)
    for (label, values), color in zip(lines, colors, strict=False):
        ax.plot(rank, ranked(values), color=color, linewidth=1.5, label=label)
    ax.set_yscale("log")
    if n > LOG_RANK_ABOVE:
        ax.set_xscale("log")
    ax.set_xlim(1, max(n, 2))
    ax.set_xlabel(f"class rank by {by} (1 = largest)" + (", log scale" if n > LOG_RANK_ABOVE else ""))
    ax.set_ylabel("records (log scale)")
    ax.set_title(f"{n:,} classes by size")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)  # outside: no series hides under it
    return fig
