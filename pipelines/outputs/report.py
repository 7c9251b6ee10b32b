"""For people: the end-of-run tables and plots of pipelines.balance (report.png) and
pipelines.histogram (histogram.png)."""

from __future__ import annotations

from pipelines.outputs.rank_plot import RANK_PLOT_ABOVE, cluster_spread, rank_figure
from transforms.plots import MAX_TICK_LABELS, label_classes, png_bytes


def held_out(c: dict, test: bool) -> tuple:
    """The held-out column(s) of a class or totals row: val, and test when there is a test split."""
    return (c.get("val", c["holdout"]), c.get("test", 0)) if test else (c["holdout"],)


def held_out_line(t: dict) -> str:
    """read N = rejected + held out + train input, naming val and test when there is a test split."""
    split = f" (val {t['val']}, test {t['test']})" if t.get("test") else ""
    return (f"read {t['read']} = rejected {t['rejected']} + held out {t['holdout']}{split} "
            f"+ train input {t['train_input']}")


SHOWN_CLASSES = 40  # past this many classes the tables show the largest and smallest half each


def shown_classes(classes: list[dict]) -> tuple[list[dict], list[dict]]:
    """The classes a table lists: all of them (label order), or past SHOWN_CLASSES the largest
    and the smallest SHOWN_CLASSES / 2 by records read (a "more classes" row between)."""
    if len(classes) <= SHOWN_CLASSES:
        return classes, []
    ranked = sorted(classes, key=lambda c: -c["input"])  # stable: ties in label order
    half = SHOWN_CLASSES // 2
    return ranked[:half], ranked[-half:]


def _listed(classes: list[dict]):
    """The classes a table lists, in order, with None where the "more" row goes."""
    head, tail = shown_classes(classes)
    return head + ([None] if tail else []) + tail


def _more(classes: list[dict], columns: int) -> tuple:
    """The row standing for the classes a table leaves out."""
    left = len(classes) - SHOWN_CLASSES
    return (f"({left:,} more)", *["..."] * (columns - 1))


def summary_table(manifest: dict) -> str:
    """Per class: read, rejected, held out (val, test), clusters, target, written; then totals
    (past SHOWN_CLASSES classes, the largest and the smallest)."""
    t = manifest["totals"]
    test = bool(t.get("test"))
    rows = [("class", "read", "rejected", *(("val", "test") if test else ("held out",)), "train in", "clusters",
             "target", "written")]
    by_label = dict(manifest["rejected"].get("by_label", {}))
    bads = {c["label"]: by_label.pop(c["label"], 0) for c in manifest["classes"]}  # what is left: "(other)"
    for c in _listed(manifest["classes"]):
        if c is None:
            rows.append(_more(manifest["classes"], len(rows[0])))
            continue
        k = sum(1 for x in c["clusters"] if x["input"] > 0)
        bad = bads[c["label"]]
        rows.append((short_label(c["label"]), c["input"] + bad, bad, *held_out(c, test), c["train_input"], k,
                     c["target"], c["output"]))
    if by_label:  # rejected records whose label is missing or names no valid class
        n = sum(by_label.values())
        rows.append(("(other)", n, n, *([0] * (1 + test)), 0, "", "", 0))
    rows.append(("TOTAL", t["read"], t["rejected"], *held_out(t, test), t["train_input"], "", "", t["output"]))
    lines = _aligned(rows)
    lines.append(held_out_line(t))
    if len(manifest["classes"]) > SHOWN_CLASSES:
        lines.append(f"the {SHOWN_CLASSES // 2} largest and {SHOWN_CLASSES // 2} smallest of {len(manifest['classes']):,} "
                     "classes by records read; every class's numbers are in manifest.json")
    return "\n".join(lines)


def ids_note(doc: dict) -> str | None:
    """A line about repeated ids, when valid records share one (manifest or histogram.json)."""
    ids = doc.get("ids", {})
    if not ids.get("duplicates"):
        return None
    return (f"note: {ids['duplicates']} valid records repeat another record's id (id column {ids['column']!r}, or "
            "identical records without one); the output stays deterministic, since every random decision is "
            "keyed by id and content")


def short_label(label: str, width: int = 40) -> str:
    """A label cut to a readable length for tables and messages (the files keep it whole)."""
    return label if len(label) <= width else label[: width - 3] + "..."


def _aligned(rows: list[tuple]) -> list[str]:
    """Rows as text columns (first left-aligned), a rule under the header and above the last row."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return lines


def histogram_table(doc: dict) -> str:
    """Per class: read, rejected, held out, train input, share, cluster sizes, balance's target."""
    clustered = any("clusters" in c for c in doc["classes"])
    planned = "error" not in doc["plan"]
    test = bool(doc["totals"].get("test"))
    header = ["class", "read", "rejected", *(("val", "test") if test else ("held out",)), "train in", "share"]
    header += ["clusters", "largest", "smallest"] if clustered else []
    header += ["target"] if planned else []
    rows = [tuple(header)]
    by_label = dict(doc["rejected"].get("by_label", {}))
    t = doc["totals"]
    bads = {c["label"]: by_label.pop(c["label"], 0) for c in doc["classes"]}
    for c in _listed(doc["classes"]):
        if c is None:
            rows.append(_more(doc["classes"], len(header)))
            continue
        bad = bads[c["label"]]
        row = [short_label(c["label"]), c["input"] + bad, bad, *held_out(c, test), c["train_input"],
               f"{c['train_input'] / max(1, t['train_input']):.1%}"]
        if clustered:
            sizes = [x["input"] for x in c["clusters"] if x["input"] > 0]
            row += [len(sizes), max(sizes, default=0), min(sizes, default=0)]
        rows.append(tuple(row + ([c["target"]] if planned else [])))
    if by_label:  # rejected records whose label is missing or names no valid class
        n = sum(by_label.values())
        rows.append(tuple(["(other)", n, n, *([0] * (1 + test)), 0, ""] + [""] * (3 * clustered + planned)))
    total = ["TOTAL", t["read"], t["rejected"], *held_out(t, test), t["train_input"],
             "100.0%" if t["train_input"] else ""]
    total += [sum(len([x for x in c["clusters"] if x["input"] > 0]) for c in doc["classes"]), "", ""] if clustered else []
    rows.append(tuple(total + ([doc["plan"]["output"]] if planned else [])))
    lines = _aligned(rows)
    lines.append(held_out_line(t))
    classes = doc["classes"]
    if len(classes) > SHOWN_CLASSES:
        lines.append(f"the {SHOWN_CLASSES // 2} largest and {SHOWN_CLASSES // 2} smallest of {len(classes):,} classes "
                     "by records read; every class's numbers are in histogram.json")
    if classes:
        big = max(classes, key=lambda c: c["input"])
        small = min(classes, key=lambda c: c["input"])
        lines.append(f"imbalance ratio {doc['imbalance_ratio']:.1f}: class {big['label']!r} has {big['input']} "
                     f"valid records, class {small['label']!r} {small['input']}")
    plan = doc["plan"]
    flags = f"--strategy {plan['strategy']}" + (f" --target {plan['target']}" if plan["target"] is not None else "")
    if not planned:
        lines.append(f"pipelines.balance {flags} would stop: {plan['error']}")
    else:
        targets = sorted(set(plan["targets"].values()))
        each = f"{targets[0]} per class" if len(targets) == 1 else f"{targets[0]} to {targets[-1]} per class"
        lines.append(f"pipelines.balance {flags} would write {plan['output']} train records ({each})")
        if clustered and plan["strategy"] == "cluster" and plan["target"] == "max":
            jj = max(classes, key=lambda c: _live(c) * max((x["input"] for x in c["clusters"]), default=0))
            lines.append(f"  Jo & Japkowicz target: clusters x largest cluster, largest for class {jj['label']!r}: "
                         f"{_live(jj)} x {max(x['input'] for x in jj['clusters'])}")
    other = [f"{s} {a['output']}" for s, a in doc["alternatives"].items() if "output" in a]
    if other:
        lines.append("other strategies, default targets: " + ", ".join(other) + " train records")
    return "\n".join(lines)


def _live(c: dict) -> int:
    return sum(1 for x in c["clusters"] if x["input"] > 0)




def preload() -> None:
    """Imports what drawing a figure needs (matplotlib: ~0.8 s), so that the job can do it
    on a thread of its own while the passes run rather than after the last shard."""
    import matplotlib.backends.backend_agg  # noqa: F401 - savefig's canvas
    import matplotlib.figure  # noqa: F401


def class_figure(n_classes: int, panels: int):
    """A Figure of `panels` side by side, wide enough for up to MAX_TICK_LABELS class names.

    matplotlib's object API without pyplot: no global figure registry, nothing to close.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(8, 0.5 * min(n_classes, MAX_TICK_LABELS) + 6), 4.5))
    return fig, fig.subplots(1, panels, squeeze=False)[0]


def scatter_per_class(ax, values: list[list], offset: float = 0.0, **style) -> None:
    """One point per value at x = the class's index (+ offset), in one call for all classes."""
    import numpy as np

    x = np.repeat(np.arange(len(values)) + offset, [len(v) for v in values])
    y = np.concatenate([np.asarray(v, float) for v in values]) if values else np.zeros(0)
    ax.scatter(x, y, **style)


def bars_per_class(ax, values: list, offset: float = 0.0, width: float = 0.7, bottom=None, **style) -> None:
    """One bar per class at x = index + offset (up to RANK_PLOT_ABOVE classes; past that, a rank plot)."""
    import numpy as np

    ax.bar(np.arange(len(values)) + offset, values, width, bottom=bottom, **style)


def save_png(fig, path: str) -> None:
    """The figure as PNG into `path` in OUT (any Beam filesystem), under a temporary name until complete."""
    from pipelines.outputs.formats import (
        write_atomic,  # Beam's file layer: imported when a figure is saved
    )

    write_atomic(path, png_bytes(fig))


def write_histogram_png(doc: dict, path: str) -> None:
    save_png(histogram_figure(doc), path)


def histogram_figure(doc: dict):
    """Records per class (held out and train input, log scale, balance's target), cluster sizes per
    class; past RANK_PLOT_ABOVE classes one rank plot: train input, target, cluster sizes' spread."""
    import numpy as np

    classes = doc["classes"]
    if len(classes) > RANK_PLOT_ABOVE:
        planned = all("target" in c for c in classes)
        fig = rank_figure(("train input", [c["train_input"] for c in classes]),
                          (f"target ({doc['plan']['strategy']})", [c["target"] for c in classes]) if planned else None,
                          [("clusters: smallest to largest", *cluster_spread(classes, "input"))]
                          if any("clusters" in c for c in classes) else ())
        fig.suptitle(f"{doc['input']['path']}  seed={doc['seed']}", fontsize=9)
        return fig
    labels = [short_label(c["label"], 24) for c in classes]
    x = np.arange(len(labels))
    clustered = any("clusters" in c for c in classes)
    fig, axes = class_figure(len(labels), 2 if clustered else 1)
    a = axes[0]
    train = [c["train_input"] for c in classes]
    held = [c["holdout"] for c in classes]
    bars_per_class(a, train, label="train input")
    bars_per_class(a, held, bottom=train, label="held out (val/)")
    if classes and all("target" in c for c in classes):
        a.scatter(x, [c["target"] for c in classes], marker="_", s=300, color="k", zorder=3,
                  label=f"target ({doc['plan']['strategy']})")
    a.set_yscale("log")
    a.set_ylim(bottom=0.7)  # a one-record class still shows a bar
    label_classes(a, labels)
    a.set_title(f"Records per class (imbalance ratio {doc['imbalance_ratio'] or 0:.1f})")
    a.legend(loc="upper right", fontsize=8)
    if clustered:
        b = axes[1]
        scatter_per_class(b, [[cl["input"] for cl in c["clusters"] if cl["input"] > 0] for c in classes],
                          s=14, alpha=0.7)
        b.set_yscale("log")
        b.set_ylim(bottom=0.7)
        label_classes(b, labels)
        b.set_title("Cluster sizes per class (train input)")
    fig.suptitle(f"{doc['input']['path']}  seed={doc['seed']}", fontsize=9)
    return fig


def write_report_png(manifest: dict, path: str) -> None:
    save_png(report_figure(manifest), path)


def report_figure(manifest: dict):
    """Records per class before and after; cluster sizes (dots) and quotas (dashes) per class; past
    RANK_PLOT_ABOVE classes one rank plot: before, after, and each one's spread of cluster sizes."""
    classes = manifest["classes"]
    suptitle = f"strategy={manifest['options']['strategy']}  seed={manifest['seed']}"
    if len(classes) > RANK_PLOT_ABOVE:
        fig = rank_figure(("before (train input)", [c["train_input"] for c in classes]),
                          ("after (written)", [c["output"] for c in classes]),
                          [("clusters before: smallest to largest", *cluster_spread(classes, "input")),
                           ("clusters written: smallest to largest", *cluster_spread(classes, "output"))])
        fig.suptitle(suptitle)
        return fig
    labels = [short_label(c["label"], 24) for c in classes]
    fig, (a, b) = class_figure(len(labels), 2)
    bars_per_class(a, [c["train_input"] for c in classes], -0.2, 0.4, label="before (train input)")
    bars_per_class(a, [c["output"] for c in classes], 0.2, 0.4, label="after (written)")
    a.set_yscale("log")
    label_classes(a, labels)
    a.set_title("Records per class")
    a.legend(loc="lower left", fontsize=8)
    live = [[cl for cl in c["clusters"] if cl["input"] > 0] for c in classes]
    scatter_per_class(b, [[cl["input"] for cl in cs] for cs in live], s=14, alpha=0.7)
    scatter_per_class(b, [[cl["quota"] for cl in cs] for cs in live], 0.25, s=14, marker="_", color="k")
    b.set_yscale("log")
    label_classes(b, labels)
    b.set_title("Cluster sizes (dots) and quotas (dashes)")
    fig.suptitle(suptitle)
    return fig
