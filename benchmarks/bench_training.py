"""Learning quality of the sampling modes and losses on held-out test sets, and training throughput.

    python -m benchmarks.bench_training [--seeds 3] [--corpora synth100,overlap10,digits50,thumbs25]
    python -m benchmarks.bench_training --throughput --no_quality

Quality. Four long-tailed corpora; for each seed s the corpus is drawn with seed s and
split into a test set and a train pool BEFORE anything reaches the job: the test rows
never reach pipelines.balance or training.fit. The pool goes through
`python -m pipelines.balance --strategy none --holdout_fraction 0.2 --seed s` (shards
keep the imbalance, val/ is hash-chosen), then each configuration trains with
`training.fit --seed s` (in this process) and its RUN/model.keras (the epoch with the
best val macro-F1) is scored on the test set. Reported: test macro-F1 and the mean test
F1 of the three classes with the fewest train records, mean ± std over seeds, beside the
anchor a user would try first: scikit-learn LogisticRegression(class_weight="balanced")
on the same train records, C picked on the same val split by macro-F1, scored on the
same test set.

- synth100: make_classification, 10 classes x 2 clusters, 32 features, class_sep 2,
  ratio 100; test: 10,000 rows drawn like the corpus (the original distribution, what
  `pipelines.balance --test_fraction` gives).
- overlap10: make_classification, 6 overlapping classes (class_sep 0.8, one cluster
  each), 16 features, ratio 10; test: 6,000 rows drawn like the corpus.
- digits50: scikit-learn's real 8x8 handwritten digits as 64 pixel values; 100 test
  digits per class (balanced: the rare classes have 1-4 train records, a test set drawn
  like the corpus would hold none of them), the rest made long-tailed with ratio 50.
- thumbs25: the same digits as 80x80 PNG class folders (as pipelines/inputs/demo.py builds
  them), ratio 25, through the job with `--input_format images --keep_embeddings`; the
  head trains on the kept 16x16 thumbnail embeddings, and the test PNGs are embedded
  with the job's own function (transforms.images.thumbnail_vectors).

Throughput (--throughput): samples/s of the image path (InceptionV3 at 299x299,
random weights, on this CPU) and of the cached-embedding path, and the input stream
alone, to show whether the input keeps up with the model.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "benchmarks", "data", "quality")
RUNS = os.path.join(ROOT, "benchmarks", "runs", "training")
RARE = 3  # rare-class F1: the mean over this many classes with the fewest train records

DEFAULT = "dynamic (default: precision_recall)"
CONFIGS = [
    ("none (shards as written)", ["--sampling", "none"]),
    ("balanced", ["--sampling", "balanced"]),
    ("balanced, no weight averaging", ["--sampling", "balanced", "--weight_averaging", "0"]),
    (DEFAULT, ["--sampling", "dynamic"]),
    ("dynamic, f1 rule (Pouyanfar), prior correction", ["--sampling", "dynamic", "--dynamic_rule", "f1"]),
    ("none + weighted loss", ["--sampling", "none", "--loss", "weighted"]),
    ("none + class-balanced loss", ["--sampling", "none", "--loss", "class_balanced"]),
]
MORE = [  # --more: the rest of what was tried, for the record
    ("dynamic, f1 rule, no prior correction",
     ["--sampling", "dynamic", "--dynamic_rule", "f1", "--no-prior_correction"]),
    ("none + focal loss", ["--sampling", "none", "--loss", "focal"]),
    ("balanced, lr 1e-3, no L2 (the head's previous settings, zero init)",
     ["--sampling", "balanced", "--learning_rate", "0.001", "--l2", "0"]),
    ("balanced, --standardize feature", ["--sampling", "balanced", "--standardize", "feature"]),
]


def tail_counts(n_max: int, ratio: float, classes: int) -> list[int]:
    return [max(1, round(n_max * ratio ** (-c / (classes - 1)))) for c in range(classes)]


def write_vectors(path: str, x: np.ndarray, y: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = x.shape[1]
    pq.write_table(pa.table({"label": [str(v) for v in y],
                             "features": pa.FixedSizeListArray.from_arrays(pa.array(x.astype(np.float32).ravel()), d)}),
                   path, row_group_size=4096)


def synthetic(folder: str, seed: int, n_pool: int, n_test: int, classes: int, ratio: float, **kw):
    """(job input path, x_test, y_test): pool and test drawn from one make_classification."""
    from sklearn.datasets import make_classification

    shares = ratio ** (-np.arange(classes) / (classes - 1))
    x, y = make_classification(n_samples=n_pool + n_test, n_classes=classes, weights=list(shares / shares.sum()),
                               flip_y=0.0, random_state=1000 + seed, **kw)
    order = np.random.default_rng(seed).permutation(len(y))
    test, pool = order[:n_test], order[n_test:]
    path = os.path.join(folder, "pool.parquet")
    write_vectors(path, x[pool], y[pool])
    return path, x[test].astype(np.float32), y[test]


def digits_split(seed: int, ratio: float, test_per_class: int = 100):
    """Indices into load_digits(): (long-tailed pool, balanced test)."""
    from sklearn.datasets import load_digits

    y = load_digits().target
    rng = np.random.default_rng(seed)
    test, pool = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        test.append(idx[:test_per_class])
        pool.append(idx[test_per_class:])
    n_max = min(len(p) for p in pool)
    keep = [p[:k] for p, k in zip(pool, tail_counts(n_max, ratio, 10), strict=True)]
    return np.sort(np.concatenate(keep)), np.concatenate(test)


def digits_pixels(folder: str, seed: int, ratio: float = 50):
    from sklearn.datasets import load_digits

    d = load_digits()
    pool, test = digits_split(seed, ratio)
    path = os.path.join(folder, "pool.parquet")
    write_vectors(path, d.data[pool], d.target[pool])
    return path, d.data[test].astype(np.float32), d.target[test]


def png(pixels8x8: np.ndarray, size: int = 80) -> bytes:
    from PIL import Image

    img = Image.fromarray((pixels8x8 * (255.0 / 16.0)).astype(np.uint8), "L")
    buf = io.BytesIO()
    img.resize((size, size), Image.Resampling.BILINEAR).save(buf, "PNG")  # as pipelines/inputs/demo.py
    return buf.getvalue()


def digits_thumbnails(folder: str, seed: int, ratio: float = 25):
    from sklearn.datasets import load_digits

    from transforms.images import thumbnail_vectors

    d = load_digits()
    pool, test = digits_split(seed, ratio)
    root = os.path.join(folder, "pngs")
    for i in pool:
        os.makedirs(os.path.join(root, str(d.target[i])), exist_ok=True)
        with open(os.path.join(root, str(d.target[i]), f"{i:04d}.png"), "wb") as f:
            f.write(png(d.images[i]))
    x_test, _, reasons = thumbnail_vectors([png(d.images[i]) for i in test], 64_000_000, 16, False)
    assert not any(reasons)
    return root, x_test, d.target[test]


CORPORA = {
    "synth100": (lambda f, s: synthetic(f, s, 12000, 10000, 10, 100, n_features=32, n_informative=12,
                                        n_redundant=4, n_clusters_per_class=2, class_sep=2.0), []),
    "overlap10": (lambda f, s: synthetic(f, s, 6000, 6000, 6, 10, n_features=16, n_informative=6,
                                         n_redundant=4, n_clusters_per_class=1, class_sep=0.8), []),
    "digits50": (digits_pixels, []),
    "thumbs25": (digits_thumbnails, ["--input_format", "images", "--keep_embeddings"]),
}


def prepare(name: str, seed: int):
    """Balanced output folder and the held-out test set of corpus `name`, seed `seed` (cached)."""
    folder = os.path.join(DATA, f"{name}-s{seed}")
    out = os.path.join(folder, "out")
    test_file = os.path.join(folder, "test.npz")
    if not (os.path.exists(os.path.join(out, "manifest.json")) and os.path.exists(test_file)):
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        build, flags = CORPORA[name]
        source, x_test, y_test = build(folder, seed)
        subprocess.run([sys.executable, "-m", "pipelines.balance", "--input", source, "--output", out,
                        "--strategy", "none", "--holdout_fraction", "0.2", "--seed", str(seed),
                        "--output_format", "parquet", "--runner=FnApiRunner", *flags],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        np.savez(test_file, x=x_test, y=y_test)
    t = np.load(test_file)
    return out, t["x"], t["y"].astype(str)


def read_split(out: str, split: str):
    import pandas as pd

    from training import manifest as mf

    ds = mf.load(out)
    df = pd.read_parquet(os.path.join(out, "parquet", split))
    col = ds.vector_column()
    return np.stack(df[col].to_numpy()).astype(np.float32), df["label"].astype(str).to_numpy()


def scores(labels: list[str], rare: list[str], y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    """(test macro-F1 over all classes, mean test F1 of the `rare` classes)."""
    from sklearn.metrics import f1_score

    f1 = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    by = dict(zip(labels, f1, strict=True))
    return float(np.mean(f1)), float(np.mean([by[c] for c in rare]))


def anchor(out: str, labels: list[str], rare: list[str], x_test, y_test) -> tuple[float, float]:
    """LogisticRegression(class_weight="balanced"), C picked on val macro-F1, scored on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    x, y = read_split(out, "train")
    xv, yv = read_split(out, "val")
    present = sorted(set(yv))  # val macro-F1 over the classes val has, as the trainer computes it
    best = (-1.0, None)
    for c in 10.0 ** np.arange(-3, 2.5, 0.5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(x, y)
        f = f1_score(yv, m.predict(xv), labels=present, average="macro", zero_division=0)
        if f > best[0]:
            best = (f, m)
    return scores(labels, rare, y_test, best[1].predict(x_test))


def train_and_score(out: str, run: str, extra: list[str], seed: int, epochs: int, epoch_size: int, batch: int,
                    labels: list[str], rare: list[str], x_test, y_test) -> tuple[float, float]:
    import keras

    from training import fit
    from training import model as models

    shutil.rmtree(run, ignore_errors=True)
    argv = ["--data", out, "--output", run, "--epochs", str(epochs), "--epoch_size", str(epoch_size),
            "--batch_size", str(batch), "--seed", str(seed), "--verbose", "0", *extra]
    keras.backend.clear_session()
    with contextlib.redirect_stdout(io.StringIO()):
        fit.run(argv)
    path = os.path.join(run, "model.keras")
    model, names = models.load(path)
    names = np.asarray(names)
    pred = names[np.asarray(model.predict(x_test, batch_size=1024, verbose=0)).argmax(axis=1)]
    return scores(labels, rare, y_test, pred)


def cell(v: np.ndarray) -> str:
    return f"{v.mean():.3f} ± {v.std():.3f}"


def quality(names: list[str], seeds: int, epochs: int, epoch_size: int, batch: int, only: str | None,
            more: bool, dump: str | None = None, first_seed: int = 0) -> None:
    configs = CONFIGS + (MORE if more else [])
    if only:
        configs = [c for c in configs if any(c[0].startswith(part) for part in only.split("|"))]
    results = {}  # (config, corpus) -> array [seeds, 2]
    started = time.time()
    for name in names:
        for seed in range(first_seed, first_seed + seeds):
            out, x_test, y_test = prepare(name, seed)
            with open(os.path.join(out, "manifest.json")) as f:
                m = json.load(f)
            labels = [c["label"] for c in m["classes"]]
            rare = [c["label"] for c in sorted(m["classes"], key=lambda c: c["train_input"])[:RARE]]
            if seed == first_seed:
                sizes = ", ".join(f"{c['label']}={c['train_input']}" for c in m["classes"])
                print(f"{name} (seed {seed}): train {sizes}; val {m['val']['records']}; test {len(y_test)} "
                      f"({', '.join(f'{v}' for v in np.unique(y_test, return_counts=True)[1])})", flush=True)
            results.setdefault(("anchor", name), []).append(anchor(out, labels, rare, x_test, y_test))
            for cname, extra in configs:
                run = os.path.join(RUNS, f"{name}-s{seed}-{abs(hash(cname)) % 10 ** 8}")
                results.setdefault((cname, name), []).append(
                    train_and_score(out, run, extra, seed, epochs, epoch_size, batch, labels, rare, x_test, y_test))
        print(f"  {name} done ({time.time() - started:.0f} s)", flush=True)
        if dump:
            with open(dump, "w") as f:
                json.dump({f"{k[0]}|{k[1]}": v for k, v in results.items()}, f)
    report(results, names, [c for c, _ in configs], seeds)


def report(results: dict, names: list[str], configs: list[str], seeds: int) -> None:
    """The markdown tables: per corpus and configuration, then dynamic - balanced and head - anchor."""
    rows = [("LogisticRegression(class_weight='balanced'), C on val [anchor]", "anchor")] + \
        [(c, c) for c in configs if (c, names[0]) in results]
    print(f"\ntest macro-F1 / mean test F1 of the {RARE} rarest classes, mean ± std over {seeds} seeds")
    print("| configuration | " + " | ".join(f"{n} macro-F1 | {n} rare F1" for n in names) + " | mean macro-F1 |")
    print("|---|" + "---:|---:|" * len(names) + "---:|")
    for label, key in rows:
        r = [np.asarray(results[(key, n)]) for n in names]
        print(f"| {label} | " + " | ".join(f"{cell(v[:, 0])} | {cell(v[:, 1])}" for v in r)
              + f" | {np.mean([v[:, 0].mean() for v in r]):.3f} |")
    if ("balanced", names[0]) in results and (DEFAULT, names[0]) in results:
        print("\nper-seed difference dynamic default - balanced (test macro-F1; rare F1), mean ± std:")
        diffs = []
        for n in names:
            d = np.asarray(results[(DEFAULT, n)]) - np.asarray(results[("balanced", n)])
            diffs.append(d[:, 0].mean())
            print(f"  {n}: {cell(d[:, 0])}; rare {cell(d[:, 1])}")
        print(f"  average over corpora: {np.mean(diffs):+.3f}")
    for n in names:
        if ("balanced", n) in results:
            d = np.asarray(results[("balanced", n)]) - np.asarray(results[("anchor", n)])
            print(f"  balanced head - anchor, {n}: {cell(d[:, 0])}")


def throughput() -> None:
    """Samples/s of the image path and of the embedding path (in this process)."""
    import keras

    from training import manifest as mf
    from training import mixtures
    from training import model as models

    img_out = os.path.join(os.path.dirname(DATA), "throughput_images")
    if not os.path.exists(os.path.join(img_out, "manifest.json")):
        from pipelines.inputs import demo

        folder = demo.build_demo_images(os.path.join(os.path.dirname(DATA), "throughput_pngs"))
        subprocess.run([sys.executable, "-m", "pipelines.balance", "--input", folder, "--input_format", "images",
                        "--output", img_out, "--keep_embeddings", "--runner=FnApiRunner"],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ds = mf.load(img_out)
    rows = []
    for inputs, size, batch, steps in (("image", 299, 32, 6), ("vector", 0, 256, 50)):
        shares = np.full(ds.classes, 1 / ds.classes)
        stream = mixtures.TFRecordMixture(ds, inputs, batch, steps + 12, 0, size).epoch(0, shares, np.ones(ds.classes))
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
    ap.add_argument("--corpora", default=",".join(CORPORA), help=f"Comma-separated, from {', '.join(CORPORA)}.")
    ap.add_argument("--seeds", type=int, default=3, help="How many seeds (default 3).")
    ap.add_argument("--first_seed", type=int, default=0,
                    help="Seeds run from this one up (default 0); fresh seeds check settings chosen on others.")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--epoch_size", type=int, default=2000)
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--more", action="store_true", help="Also run the other configurations tried (MORE).")
    ap.add_argument("--dump", default=None, help="Write the per-seed results to this JSON file.")
    ap.add_argument("--report", default=None, help="Print the tables of --dump files (comma-separated), run nothing.")
    ap.add_argument("--throughput", action="store_true")
    ap.add_argument("--no_quality", action="store_true")
    ap.add_argument("--only", default=None, help="Run the configurations whose names start with one of A|B|...")
    a = ap.parse_args()
    if a.report:
        results = {}
        for path in a.report.split(","):
            with open(path) as f:
                results |= {tuple(k.split("|")): v for k, v in json.load(f).items()}
        names = [n for n in a.corpora.split(",") if ("anchor", n) in results]
        report(results, names, [c for c, _ in CONFIGS + MORE], min(len(v) for v in results.values()))
        return
    if not a.no_quality:
        names = a.corpora.split(",")
        unknown = [n for n in names if n not in CORPORA]
        if unknown:
            raise SystemExit(f"--corpora: unknown {unknown}; known: {', '.join(CORPORA)}")
        quality(names, a.seeds, a.epochs, a.epoch_size, a.batch_size, a.only, a.more, a.dump, a.first_seed)
    if a.throughput:
        throughput()


if __name__ == "__main__":
    main()
