"""The replica on the real job's splits: head - anchor per configuration (docs/BENCHMARKS.md, "Weight averaging").

    .venv/bin/python benchmarks/training_replica/job_splits.py thumbs25 20 30 '{"base": {}, "ema9r": {"ema": 0.9, "ema_restart": true}}'
    .venv/bin/python benchmarks/training_replica/job_splits.py thumbs25 20 30 --converged

Corpora and splits come from benchmarks.bench_training (pipelines.balance's train/val,
the held-out test set), so the anchor is the benchmark's. Configurations are replica.run
keyword arguments over the trainer's defaults (zero init, global scale, Adam 0.02, L2 20,
balanced). --converged instead fits LogisticRegression at fixed C values on the same
globally standardised train records: where the head's own C lands once optimised.
"""

import json
import os
import pickle
import sys
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(os.path.dirname(HERE))]

import replica  # noqa: E402

from benchmarks import bench_training as bt  # noqa: E402

CACHE = os.environ.get("REPLICA_CACHE", "/tmp/training_replica_cache")
TRAINER = dict(rule_kind="balanced", init="zero", std_floor="global", lr=2e-2, l2n=20)


def job_split(corpus: str, seed: int) -> dict:
    path = os.path.join(CACHE, f"job-{corpus}-{seed}.pkl")
    if os.path.exists(path):
        with open(path, "rb") as f:
            return pickle.load(f)
    out, xt, yt = bt.prepare(corpus, seed)
    x, y = bt.read_split(out, "train")
    xv, yv = bt.read_split(out, "val")
    labels = sorted(set(y) | set(yt), key=int)
    index = {label: i for i, label in enumerate(labels)}
    d = dict(xtr=x, ytr=np.array([index[v] for v in y]), xva=xv, yva=np.array([index[v] for v in yv]),
             xte=xt, yte=np.array([index[v] for v in yt]), anchor=bt.anchor(out, labels, labels[:1], xt, yt)[0])
    os.makedirs(CACHE, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(d, f)
    return d


def converged(d: dict, c: float) -> float:
    """Test macro-F1 of LogisticRegression(C=c, balanced) on globally standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    mean, var = d["xtr"].mean(0), d["xtr"].var(0)
    scale = np.sqrt(var[var > 1e-12 * var.max()].mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit((d["xtr"] - mean) / scale, d["ytr"])
    return f1_score(d["yte"], m.predict((d["xte"] - mean) / scale), labels=np.unique(d["yte"]), average="macro")


def main() -> None:
    corpus, first, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    splits = [job_split(corpus, s) for s in range(first, stop)]
    anchor = np.array([d["anchor"] for d in splits])
    if sys.argv[4] == "--converged":
        configs = {f"LogisticRegression C={c}": (lambda d, s, c=c: converged(d, c)) for c in (0.02, 0.05, 0.2, 1.0)}
    else:
        configs = {name: (lambda d, s, kw=kw: replica.run(d, seed=s, **(TRAINER | kw))[0])
                   for name, kw in json.loads(sys.argv[4]).items()}
    print(f"{corpus} seeds {first}-{stop - 1}: anchor {anchor.mean():.4f}")
    for name, score in configs.items():
        f1 = np.array([score(d, s) for s, d in zip(range(first, stop), splits, strict=True)])
        diff = f1 - anchor
        print(f"  {name}: {f1.mean():.4f}, - anchor {diff.mean():+.4f} (s.e. {diff.std(ddof=1) / np.sqrt(len(diff)):.4f})")


if __name__ == "__main__":
    main()
