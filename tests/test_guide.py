"""docs/GUIDE.md works as written: its bash and python blocks run in order in one empty
folder, and its table of Jo & Japkowicz output sizes equals what the histogram job finds."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "GUIDE.md"


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of the fenced blocks that run: bash and python ("sh" is shown only)."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(bash|python)\n(.*?)^```", text, re.M | re.S)]


@pytest.mark.heavy
def test_the_guide_runs_as_written(tmp_path):
    text = GUIDE.read_text()
    found = blocks(text)
    assert [lang for lang, _ in found].count("bash") >= 6 and any(lang == "python" for lang, _ in found)
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
               PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    for lang, code in found:
        cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{lang} block failed:\n{code}\n--- stderr:\n{done.stderr[-3000:]}"

    # the table of output sizes by k
    table = text[text.index("| k | T per class |"):].split("\n\n")[0].splitlines()[2:]
    assert len(table) == 5
    for row in table:
        k, t, written, ratio = (cell.strip().replace(",", "") for cell in row.strip("|").split("|"))
        h = json.loads((tmp_path / f"stats-k{k}" / "histogram.json").read_text())
        assert int(written) == h["plan"]["output"]
        assert {c["target"] for c in h["classes"]} == {int(t)}
        assert float(ratio) == round(h["plan"]["output"] / h["totals"]["train_input"], 1)
    run = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [e["epoch"] for e in run] == [1, 2, 3, 4, 5]  # 3 epochs, then 2 more on --resume
    assert (tmp_path / "run" / "confusion-val.png").exists()
