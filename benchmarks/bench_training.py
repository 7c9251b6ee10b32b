"""Learning quality of the sampling modes and losses, and training throughput.

    python -m benchmarks.bench_training [--seeds 3] [--epochs 10] [--throughput]

Quality: one long-tailed corpus (scikit-learn make_classification: 10 classes,
imbalance ratio 100, overlapping Gaussian clusters, 32 features), balanced with
`--strategy none` so the shards keep the imbalance and the trainer does the work.
Every configuration trains the same linear final layer with the same budget
(epochs x epoch_size), batch size and seeds; the table gives the final and best val
macro-F1 and the rarest class's final F1, averaged over seeds.

Throughput (--throughput): samples/s of the image path (InceptionV3 at 299x299,
random weights, on this CPU) and of the cached-embedding path, and the input
stream alone, to show whether the input keeps up with the model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "benchmarks", "data")
RUNS = os.path.join(ROOT, "benchmarks", "runs", "training")

CONFIGS = [
    ("none (shards as written)", ["--sampling", "none", "--no-prior_correction"]),
    ("balanced", ["--sampling", "balanced", "--no-prior_correction"]),
    ("dynamic, mix 1 (Pouyanfar)", ["--sampling", "dynamic", "--dynamic_mix", "1", "--no-prior_correction"]),
    ("dynamic, mix 0.5", ["--sampling", "dynamic", "--dynamic_mix", "0.5", "--no-prior_correction"]),
    ("dynamic, mix 0.25", ["--sampling", "dynamic", "--dynamic_mix", "0.25", "--no-prior_correction"]),
    ("dynamic, mix 0.5, F1 smoothing 0.5",
     ["--sampling", "dynamic", "--dynamic_mix", "0.5", "--f1_smoothing", "0.5", "--no-prior_correction"]),
    ("dynamic, mix 1, prior correction", ["--sampling", "dynamic", "--dynamic_mix", "1", "--prior_correction"]),
    ("dynamic, mix 0.5, prior correction", ["--sampling", "dynamic", "--dynamic_mix", "0.5", "--prior_correction"]),
    ("none + weighted loss", ["--sampling", "none", "--loss", "weighted", "--no-prior_correction"]),
    ("none + class-balanced loss", ["--sampling", "none", "--loss", "class_balanced", "--no-prior_correction"]),
    ("none + focal loss", ["--sampling", "none", "--loss", "focal", "--no-prior_correction"]),
    ("balanced + class-balanced loss",
     ["--sampling", "balanced", "--loss", "class_balanced", "--no-prior_correction"]),
    ("dynamic, mix 1, prior correction + class-balanced loss",
     ["--sampling", "dynamic", "--dynamic_mix", "1", "--prior_correction", "--loss", "class_balanced"]),
]


def make_corpus(folder: str, n: int = 40000, seed: int = 0) -> str:
    """Parquet corpus: label c0..c9 with shares ~ 100**(-c/9), 32 features."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import make_classification

    path = os.path.join(folder, "corpus.parquet")
    if os.path.exists(path):
        return path
    shares = 100.0 ** (-np.arange(10) / 9)
    x, y = make_classification(n_samples=n, n_features=32, n_informative=12, n_redundant=4, n_classes=10,
                               n_clusters_per_class=2, class_sep=1.2, weights=list(shares / shares.sum()),
                               flip_y=0.0, random_state=seed)
    os.makedirs(folder, exist_ok=True)
    pq.write_table(pa.table({"label": [f"c{v}" for v in y],
                             "features": pa.FixedSizeListArray.from_arrays(pa.array(x.astype(np.float32).ravel()), 32)}),
                   path, row_group_size=8192)
    return path


def balance(corpus: str, out: str) -> None:
    if os.path.exists(os.path.join(out, "manifest.json")):
        return
    subprocess.run([sys.executable, "-m", "pipelines.balance", "--input", corpus, "--output", out,
                    "--strategy", "none", "--holdout_fraction", "0.25", "--runner=FnApiRunner"],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def fit(data: str, run: str, extra: list[str], seed: int, epochs: int, epoch_size: int) -> list[dict]:
    shutil.rmtree(run, ignore_errors=True)
    cmd = [sys.executable, "-m", "training.fit", "--data", data, "--output", run, "--epochs", str(epochs),
           "--epoch_size", str(epoch_size), "--batch_size", "128", "--seed", str(seed), "--verbose", "0", *extra]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(os.path.join(run, "history.json")) as f:
        return json.load(f)


def quality(seeds: int, epochs: int, epoch_size: int, only: str | None = None) -> None:
    corpus = make_corpus(os.path.join(DATA, "quality"))
    data = os.path.join(DATA, "quality", "balanced")
    balance(corpus, data)
    with open(os.path.join(data, "manifest.json")) as f:
        m = json.load(f)
    rarest = min(m["classes"], key=lambda c: c["train_input"])["label"]
    sizes = ", ".join(f"{c['label']}={c['train_input']}" for c in m["classes"])
    print(f"train sizes: {sizes}; val {m['val']['records']} records; rarest class {rarest}\n")
    print("| configuration | final macro-F1 | best macro-F1 | rarest class F1 (final) |")
    print("|---|---:|---:|---:|")
    for name, extra in CONFIGS:
        if only and not any(part in name for part in only.split("|")):
            continue
        final, best, rare = [], [], []
        for seed in range(seeds):
            h = fit(data, os.path.join(RUNS, f"{len(final)}-{abs(hash(name)) % 10**6}-{seed}"), extra, seed,
                    epochs, epoch_size)
            final.append(h[-1]["val_macro_f1"])
            best.append(max(e["val_macro_f1"] for e in h))
            rare.append(h[-1]["classes"][rarest]["f1"] or 0.0)
        print(f"| {name} | {np.mean(final):.3f} ± {np.std(final):.3f} | {np.mean(best):.3f} | "
              f"{np.mean(rare):.3f} ± {np.std(rare):.3f} |", flush=True)


def throughput() -> None:
    """Samples/s of the image path and of the embedding path (in this process)."""
    import keras

    from training import data as tdata
    from training import manifest as mf
    from training import model as models

    img_out = os.path.join(DATA, "throughput_images")
    if not os.path.exists(os.path.join(img_out, "manifest.json")):
        from pipelines import demo

        folder = demo.build_demo_images(os.path.join(DATA, "throughput_pngs"))
        subprocess.run([sys.executable, "-m", "pipelines.balance", "--input", folder, "--input_format", "images",
                        "--output", img_out, "--keep_embeddings", "--runner=FnApiRunner"],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ds = mf.load(img_out)
    rows = []
    for inputs, size, batch, steps in (("image", 299, 32, 6), ("vector", 0, 256, 50)):
        shares = np.full(ds.classes, 1 / ds.classes)
        stream = tdata.TFRecordMixture(ds, inputs, batch, steps + 12, 0, size).epoch(0, shares, np.ones(ds.classes))
        it = iter(stream)
        next(it)
        t = time.perf_counter()
        for _ in range(steps):
            next(it)
        input_rate = steps * batch / (time.perf_counter() - t)
        if inputs == "image":
            model = models.build_image_model(ds.classes, size, "none", True, 0)
        else:
            sample = np.concatenate([next(it)[0].numpy() for _ in range(4)])
            model = models.build_vector_model(ds.classes, ds.vector_dim(), sample)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
        model.fit(stream, epochs=1, steps_per_epoch=2, verbose=0)  # compile and warm up
        t = time.perf_counter()
        model.fit(stream, epochs=1, steps_per_epoch=steps, verbose=0)
        train_rate = steps * batch / (time.perf_counter() - t)
        rows.append((inputs, size, batch, input_rate, train_rate))
    print("\n| path | input alone (samples/s) | training (samples/s) | input keeps up |")
    print("|---|---:|---:|---|")
    for inputs, size, batch, inp, tr in rows:
        what = f"images {size}x{size}, InceptionV3 (random weights), batch {batch}" if inputs == "image" \
            else f"cached 256-d vectors (thumbnails as embeddings), batch {batch}"
        print(f"| {what} | {inp:,.0f} | {tr:,.0f} | {'yes' if inp > tr else 'no'} |")


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_training", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--epoch_size", type=int, default=8192)
    ap.add_argument("--throughput", action="store_true")
    ap.add_argument("--no_quality", action="store_true")
    ap.add_argument("--only", default=None, help="Run the configurations whose names contain one of A|B|...")
    a = ap.parse_args()
    if not a.no_quality:
        quality(a.seeds, a.epochs, a.epoch_size, a.only)
    if a.throughput:
        throughput()


if __name__ == "__main__":
    main()
