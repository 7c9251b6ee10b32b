"""The trainer's printed output stays readable with many classes: summaries past
SHOWN_CLASSES, the whole table in a file, a plot of quantiles rather than a line per class."""

from __future__ import annotations

import numpy as np

from training.metrics import SHOWN_CLASSES, format_report, full_table
from training.report import write_history_png
from training.run_state import shares_line


def report_of(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    classes = {f"c{i:04d}": {"precision": float(p), "recall": float(r), "f1": float(2 * p * r / (p + r)),
                             "support": int(s)}
               for i, (p, r, s) in enumerate(zip(rng.uniform(0.1, 1, n), rng.uniform(0.1, 1, n),
                                                 rng.integers(1, 500, n), strict=True))}
    return {"classes": classes, "macro_f1": float(np.mean([c["f1"] for c in classes.values()])),
            "records": sum(c["support"] for c in classes.values()), "accuracy": 0.5}


def test_a_thousand_class_report_prints_the_head_the_worst_and_the_macro_row(tmp_path):
    report = report_of(1000)
    path = full_table(str(tmp_path), "test-report.txt", report)
    text = format_report(report, SHOWN_CLASSES, path)
    lines = text.splitlines()
    assert len(lines) <= SHOWN_CLASSES + 5
    largest = sorted(report["classes"], key=lambda k: -report["classes"][k]["support"])[0]
    worst = min(report["classes"], key=lambda k: report["classes"][k]["f1"])
    assert any(line.startswith(largest) for line in lines) and any(line.startswith(worst) for line in lines)
    assert lines[-1].startswith("macro") and "960 more classes not shown: all of them in" in text
    whole = open(path).read().splitlines()
    assert len(whole) == 1000 + 2  # header, every class, macro
    small = report_of(10)
    assert full_table(str(tmp_path), "small.txt", small) is None
    assert format_report(small, SHOWN_CLASSES) == format_report(small)


def test_the_epoch_line_summarises_shares_past_the_limit():
    labels = [f"c{i}" for i in range(500)]
    used = np.full(500, 1 / 500)
    following = used.copy()
    following[7], following[9] = used[7] * 3, used[9] / 4
    line = shares_line(labels, used, following / following.sum())
    assert line.startswith("shares used min 0.0020 median 0.0020 max 0.0020 (500 classes); moved most: c9 ")
    assert "c7 " in line and len(line) < 200
    assert shares_line(labels[:3], [0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == "shares used [0.200 0.300 0.500]"


def test_the_history_plot_of_many_classes(tmp_path):
    reports = [report_of(300, seed) for seed in range(3)]
    history = [{"epoch": e + 1, "val_macro_f1": r["macro_f1"],
                "classes": {k: c | {"share": 1 / 300} for k, c in r["classes"].items()}} for e, r in enumerate(reports)]
    write_history_png(history, str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
