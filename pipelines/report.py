"""What a balance run did, for people: the end-of-run table and OUT/report.png."""

from __future__ import annotations

import io


def summary_table(manifest: dict) -> str:
    """Per class: read, rejected, held out, clusters, target, written; then totals."""
    rows = [("class", "read", "rejected", "held out", "train in", "clusters", "target", "written")]
    by_label = dict(manifest["rejected"].get("by_label", {}))
    for c in manifest["classes"]:
        k = sum(1 for x in c["clusters"] if x["input"] > 0)
        bad = by_label.pop(c["label"], 0)
        rows.append((c["label"], c["input"] + bad, bad, c["holdout"], c["train_input"], k, c["target"], c["output"]))
    if by_label:  # rejected records whose label is missing or names no valid class
        n = sum(by_label.values())
        rows.append(("(other)", n, n, 0, 0, "", "", 0))
    t = manifest["totals"]
    rows.append(("TOTAL", t["read"], t["rejected"], t["holdout"], t["train_input"], "", "", t["output"]))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    lines.append(f"read {t['read']} = rejected {t['rejected']} + held out {t['holdout']} "
                 f"+ train input {t['train_input']}")
    return "\n".join(lines)


def write_report_png(manifest: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from pipelines import shards

    classes = manifest["classes"]
    labels = [c["label"] for c in classes]
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
