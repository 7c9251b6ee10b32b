"""The end-of-run tables at many classes: the largest and smallest classes, a row for the rest."""

from __future__ import annotations

from pipelines.outputs.report import SHOWN_CLASSES, summary_table


def manifest(n: int) -> dict:
    classes = [{"label": f"c{i}", "input": 1000 - i, "holdout": 1, "val": 1, "test": 0, "train_input": 999 - i,
                "target": 500, "output": 500, "clusters": [{"id": 0, "input": 999 - i, "quota": 500}]}
               for i in range(n)]
    read = sum(c["input"] for c in classes) + 3
    return {"classes": classes, "rejected": {"records": 3, "by_label": {"c0": 1, "zz": 2}},
            "totals": {"read": read, "rejected": 3, "holdout": n, "val": n, "test": 0,
                       "train_input": read - 3 - n, "output": 500 * n}}


def rows(table: str) -> list[str]:
    return [line.split()[0] for line in table.splitlines()[2:] if line and not line.startswith("-")]


def test_a_few_classes_are_all_listed_in_label_order():
    table = summary_table(manifest(5))
    assert rows(table)[:7] == ["c0", "c1", "c2", "c3", "c4", "(other)", "TOTAL"]
    assert "more)" not in table


def test_past_the_limit_the_largest_and_smallest_classes_and_a_row_for_the_rest():
    table = summary_table(manifest(10_000))
    listed = rows(table)
    half = SHOWN_CLASSES // 2
    assert listed[:half] == [f"c{i}" for i in range(half)]  # the largest
    assert listed[half] == "(9,960" and listed[half + 1:2 * half + 1] == [f"c{i}" for i in range(10_000 - half, 10_000)]
    assert listed[2 * half + 1:2 * half + 3] == ["(other)", "TOTAL"]  # rejected records of no class still shown
    assert len(table.splitlines()) < 60 and "of 10,000 classes" in table
    c0 = next(line for line in table.splitlines() if line.startswith("c0 "))
    assert c0.split()[1:3] == ["1001", "1"]  # its rejected record counted with it
