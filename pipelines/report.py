"""For people: the end-of-run tables and plots of pipelines.balance (report.png) and
pipelines.histogram (histogram.png)."""

from __future__ import annotations

import io


def held_out(c: dict, test: bool) -> tuple:
    """The held-out column(s) of a class or totals row: val, and test when there is a test split."""
    return (c.get("val", c["holdout"]), c.get("test", 0)) if test else (c["holdout"],)


def held_out_line(t: dict) -> str:
    """read N = rejected + held out + train input, naming val and test when there is a test split."""
    split = f" (val {t['val']}, test {t['test']})" if t.get("test") else ""
    return (f"read {t['read']} = rejected {t['rejected']} + held out {t['holdout']}{split} "
            f"+ train input {t['train_input']}")


def summary_table(manifest: dict) -> str:
    """Per class: read, rejected, held out (val, test), clusters, target, written; then totals."""
    t = manifest["totals"]
    test = bool(t.get("test"))
    rows = [("class", "read", "rejected", *(("val", "test") if test else ("held out",)), "train in", "clusters",
             "target", "written")]
    by_label = dict(manifest["rejected"].get("by_label", {}))
    for c in manifest["classes"]:
        k = sum(1 for x in c["clusters"] if x["input"] > 0)
        bad = by_label.pop(c["label"], 0)
        rows.append((short_label(c["label"]), c["input"] + bad, bad, *held_out(c, test), c["train_input"], k,
                     c["target"], c["output"]))
    if by_label:  # rejected records whose label is missing or names no valid class
        n = sum(by_label.values())
        rows.append(("(other)", n, n, *([0] * (1 + test)), 0, "", "", 0))
    rows.append(("TOTAL", t["read"], t["rejected"], *held_out(t, test), t["train_input"], "", "", t["output"]))
    lines = _aligned(rows)
    lines.append(held_out_line(t))
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
    for c in doc["classes"]:
        bad = by_label.pop(c["label"], 0)
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


def write_histogram_png(doc: dict, path: str) -> None:
    """Records per class (held out and train input, log scale, balance's target), cluster sizes per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from pipelines import shards

    classes = doc["classes"]
    labels = [short_label(c["label"], 24) for c in classes]
    x = np.arange(len(labels))
    clustered = any("clusters" in c for c in classes)
    fig, axes = plt.subplots(1, 2 if clustered else 1, figsize=(max(8, 0.5 * len(labels) + 6), 4.5), squeeze=False)
    a = axes[0][0]
    train = [c["train_input"] for c in classes]
    held = [c["holdout"] for c in classes]
    a.bar(x, train, 0.7, label="train input")
    a.bar(x, held, 0.7, bottom=train, label="held out (val/)")
    if classes and all("target" in c for c in classes):
        a.scatter(x, [c["target"] for c in classes], marker="_", s=300, color="k", zorder=3,
                  label=f"target ({doc['plan']['strategy']})")
    a.set_yscale("log")
    a.set_ylim(bottom=0.7)  # a one-record class still shows a bar
    a.set_xticks(x, labels, rotation=90 if len(labels) > 12 else 0)
    a.set_title(f"Records per class (imbalance ratio {doc['imbalance_ratio'] or 0:.1f})")
    a.legend(loc="upper right", fontsize=8)
    if clustered:
        b = axes[0][1]
        for i, c in enumerate(classes):
            sizes = [cl["input"] for cl in c["clusters"] if cl["input"] > 0]
            b.scatter(np.full(len(sizes), i), sizes, s=14, alpha=0.7)
        b.set_yscale("log")
        b.set_ylim(bottom=0.7)
        b.set_xticks(x, labels, rotation=90 if len(labels) > 12 else 0)
        b.set_title("Cluster sizes per class (train input)")
    fig.suptitle(f"{doc['input']['path']}  seed={doc['seed']}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    shards.write_atomic(path, buf.getvalue())


def write_report_png(manifest: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from pipelines import shards

    classes = manifest["classes"]
    labels = [short_label(c["label"], 24) for c in classes]
    x = np.arange(len(labels))
    fig, (a, b) = plt.subplots(1, 2, figsize=(max(8, 0.5 * len(labels) + 6), 4.5))
    a.bar(x - 0.2, [c["train_input"] for c in classes], 0.4, label="before (train input)")
    a.bar(x + 0.2, [c["output"] for c in classes], 0.4, label="after (written)")
    a.set_yscale("log")
    a.set_xticks(x, labels, rotation=90 if len(labels) > 12 else 0)
    a.set_title("Records per class")
    a.legend(loc="lower left", fontsize=8)
    for i, c in enumerate(classes):
        sizes = [cl["input"] for cl in c["clusters"] if cl["input"] > 0]
        b.scatter(np.full(len(sizes), i), sizes, s=14, alpha=0.7)
        quotas = [cl["quota"] for cl in c["clusters"] if cl["input"] > 0]
        b.scatter(np.full(len(quotas), i) + 0.25, quotas, s=14, marker="_", color="k")
    b.set_yscale("log")
    b.set_xticks(x, labels, rotation=90 if len(labels) > 12 else 0)
    b.set_title("Cluster sizes (dots) and quotas (dashes)")
    fig.suptitle(f"strategy={manifest['options']['strategy']}  seed={manifest['seed']}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    shards.write_atomic(path, buf.getvalue())
