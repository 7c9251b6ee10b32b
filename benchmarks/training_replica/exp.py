"""The numpy replica's experiment tables (docs/BENCHMARKS.md, "what was tried").

    cd benchmarks/training_replica && python -c "import exp; exp.table([...], seeds=5)"

Each config is a dict of replica.run keyword arguments; `anchor` is LogisticRegression
(class_weight="balanced") with C picked on val. Corpora are cached under CACHE.
"""

import os
import pickle

import corpora
import numpy as np
import replica

CORP = {
    "digits50": lambda s: corpora.digits(s, 50),
    "thumbs25": lambda s: corpora.digits(s, 25, thumbs=True),
    "synth100": lambda s: corpora.synth(s, sep=2.0),
    "overlap10": lambda s: corpora.synth(
        s, ratio=10, sep=0.8, C=6, feats=16, inf=6, n_train=6000, test_n=6000, clusters=1
    ),
    "synth100b": lambda s: corpora.synth(s, sep=2.0, balanced_test=True),
    "overlap10b": lambda s: corpora.synth(
        s,
        ratio=10,
        sep=0.8,
        C=6,
        feats=16,
        inf=6,
        n_train=6000,
        test_n=6000,
        clusters=1,
        balanced_test=True,
    ),
}
CACHE = os.environ.get("REPLICA_CACHE", "/tmp/training_replica_cache")
os.makedirs(CACHE, exist_ok=True)


def get(k, s):
    p = f"{CACHE}/{k}-{s}.pkl"
    if os.path.exists(p):
        return pickle.load(open(p, "rb"))
    d = CORP[k](s)
    d["anchor"] = replica.anchor(d, Cs=10.0 ** np.arange(-3, 2.1, 0.5))
    pickle.dump(d, open(p, "wb"))
    return d


def table(configs, seeds=5, corp=("digits50", "thumbs25", "synth100", "overlap10"), anchor=True):
    data = {k: [get(k, s) for s in range(seeds)] for k in corp}
    res = {}
    for k in corp:
        res[("anchor", k)] = np.array([d["anchor"] for d in data[k]])
    for name, kw in configs:
        for k in corp:
            res[(name, k)] = np.array([replica.run(d, seed=s, **kw) for s, d in enumerate(data[k])])
    names = ["anchor"] + [n for n, _ in configs]
    print("| config | " + " | ".join(corp) + " | mean |")
    for n in names:
        cells = [
            f"{res[(n, k)][:, 0].mean():.3f}±{res[(n, k)][:, 0].std():.3f} r{res[(n, k)][:, 1].mean():.2f}"
            for k in corp
        ]
        print(
            f"| {n} | "
            + " | ".join(cells)
            + f" | {np.mean([res[(n, k)][:, 0].mean() for k in corp]):.4f} |",
            flush=True,
        )
    return res
