"""Safe by construction: nothing read from input, shards or manifests is unpickled or
evaluated, Keras models load in safe mode, and no command goes through a shell.

A static check of the project's own code (its AST), so that a new call site fails here.
Path checks of the manifest and the decoder's pixel cap are tested where they act
(tests/test_training.py::test_trainer_checks_what_it_reads, tests/test_images.py).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "transforms", "training")
SOURCES = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))

FORBIDDEN_CALLS = {"eval", "exec", "__import__"}
# The one pickle the project's own code does: side inputs the job writes, for its own forked
# processes, into a folder of its own (tempfile.mkdtemp: owner-only), read back by those
# processes; never input, shards or manifests (multiprocessing pickles their calls anyway).
ALLOWED = {"pipelines/parallel.py": {"imports pickle"}}
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}


def calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def name_of(func) -> str:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def problems_in(text: str) -> list[str]:
    tree = ast.parse(text)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            problems += [f"line {node.lineno}: imports {n}" for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
    for call in calls(tree):
        name, line = name_of(call.func), call.lineno
        if name in FORBIDDEN_CALLS:
            problems.append(f"line {line}: calls {name}()")
        if name == "load" and isinstance(call.func, ast.Attribute) and name_of(call.func.value) in ("np", "numpy"):
            if is_true(keyword(call, "allow_pickle")):
                problems.append(f"line {line}: np.load(allow_pickle=True)")
        if name == "load_model" and not is_true(keyword(call, "safe_mode")):
            problems.append(f"line {line}: load_model without safe_mode=True")
        if name == "load" and isinstance(call.func, ast.Attribute) and name_of(call.func.value) == "yaml":
            problems.append(f"line {line}: yaml.load")
        if is_true(keyword(call, "shell")):
            problems.append(f"line {line}: a command through a shell (shell=True)")
    return problems


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_unsafe_loading_or_evaluation(path):
    allowed = ALLOWED.get(str(path.relative_to(ROOT)), set())
    problems = [p for p in problems_in(path.read_text()) if p.split(": ", 1)[1] not in allowed]
    assert not problems, f"{path.relative_to(ROOT)}: " + "; ".join(problems)


def test_the_check_finds_what_it_looks_for():
    bad = ("import pickle\nx = eval(s)\nm = keras.models.load_model(p)\nnp.load(f, allow_pickle=True)\n"
           "subprocess.run(c, shell=True)\nkeras.saving.load_model(p, safe_mode=True)\nnp.load(f)\n")
    assert problems_in(bad) == [
        "line 1: imports pickle", "line 2: calls eval()", "line 3: load_model without safe_mode=True",
        "line 4: np.load(allow_pickle=True)", "line 5: a command through a shell (shell=True)"]
    assert len(SOURCES) > 20
