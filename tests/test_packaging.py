"""What --setup_file ./setup.py stages for remote workers installs and runs outside the repository."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import sysconfig
import tarfile

from helpers import write_parquet_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sdist_installs_and_runs_from_outside_the_repository(tmp_path):
    # 1. the sdist, built the way Beam's stager builds it without `build`: setup.py sdist
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(dist)], cwd=ROOT, check=True,
                   capture_output=True)
    (sdist,) = glob.glob(str(dist / "*.tar.gz"))
    names = tarfile.open(sdist).getnames()
    for module in ("pipelines/balance.py", "transforms/plan.py", "training/fit.py", "setup.py", "pyproject.toml"):
        assert any(n.endswith(module) for n in names), module
    # 2. a fresh environment: its own site-packages for the project, the test venv's for dependencies
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    site = glob.glob(str(env_dir / "lib" / "python3*" / "site-packages"))[0]
    with open(os.path.join(site, "dependencies.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")  # a plain path: its .pth files (the editable install) stay off
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", site, sdist], check=True, capture_output=True)
    python = str(env_dir / "bin" / "python")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # a PYTHONPATH would put a source tree first
    where = subprocess.run([python, "-c", "import pipelines, transforms, training; print(pipelines.__file__)"],
                           cwd=outside, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(site), where  # not the source tree
    # 3. the job runs from there
    corpus = write_parquet_corpus(str(tmp_path / "corpus"), files=1)
    run = subprocess.run([python, "-m", "pipelines.balance", "--input", corpus, "--output", str(tmp_path / "out"),
                          "--runner=FnApiRunner", "--output_format", "parquet"],
                         cwd=outside, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = json.load(open(tmp_path / "out" / "manifest.json"))
    assert manifest["totals"]["read"] == manifest["totals"]["rejected"] + manifest["totals"]["holdout"] + \
        manifest["totals"]["train_input"]


def test_the_trainer_starts_without_beam_or_tensorflow():
    """On a JAX-only machine (no Beam, no TensorFlow), training.fit and training.evaluate import,
    and draw their PNGs."""
    code = ("import os, sys, tempfile, training.fit, training.evaluate; "
            "from training.report import write_confusion_png, write_history_png; "
            "d = tempfile.mkdtemp(); "  # and they draw their PNGs without Beam
            "write_history_png([{'epoch': 1, 'val_macro_f1': 0.5, 'classes': {'a': {'f1': 0.5, 'share': 1.0}}}], "
            "os.path.join(d, 'report.png')); "
            "write_confusion_png([[1, 0], [0, 1]], ['a', 'b'], os.path.join(d, 'c.png'), 'val'); "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & {'apache_beam', 'tensorflow'}); "
            "print(bad, sorted(os.listdir(d))); sys.exit(1 if bad or sorted(os.listdir(d)) != ['c.png', 'report.png'] else 0)")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
