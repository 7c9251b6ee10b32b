"""Image throughput of pipelines.balance: decode alone, thumbnails, the whole job, InceptionV3.

    python -m benchmarks.bench_images --images 20000 --size 64 [--embed_images 400]

Generates a long-tailed image-folder corpus of PNGs (cached in benchmarks/data/), then
measures, on this machine:

  decode only      read each file and decode it fully with Pillow (the floor)
  thumbnails       transforms.images.thumbnail_vectors: check + decode + 16x16 vector
  job (thumbnail)  python -m pipelines.balance --input_format images, FnApiRunner,
                   Parquet output: read + validate + thumbnail + k-means + write
  job (inception)  the same with --cluster_on inception_v3 --embedding_weights none
                   on the first --embed_images images, at 299 x 299

and prints images/s for each, and thumbnails / decode-only (the goal: at most 1.5x).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "benchmarks", "data")
RUNS = os.path.join(ROOT, "benchmarks", "runs")


def make_images(folder: str, n: int, size: int, classes: int = 10, ratio: float = 50.0, seed: int = 0) -> str:
    """n PNGs of size x size, class c with a share proportional to ratio**(-c/(classes-1))."""
    from PIL import Image

    done = os.path.join(folder, "_done")
    if os.path.exists(done):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    share = ratio ** (-np.arange(classes) / (classes - 1))
    counts = np.maximum(1, np.round(n * share / share.sum())).astype(int)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for c, count in enumerate(counts):
        os.makedirs(os.path.join(folder, f"c{c}"), exist_ok=True)
        for i in range(count):
            # smooth blobs per class plus noise: compressible like photos, not like noise
            cx, cy = rng.uniform(0.2, 0.8, 2)
            img = 200 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) * (4 + c))
            rgb = np.stack([img, img * (c / classes), 255 - img], -1) + rng.normal(0, 8, (size, size, 3))
            Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB").save(
                os.path.join(folder, f"c{c}", f"{i:06d}.png"))
    open(done, "w").close()
    return folder


def files_of(folder: str) -> list[str]:
    return sorted(glob.glob(os.path.join(folder, "*", "*.png")))


def decode_only(paths: list[str]) -> float:
    from PIL import Image

    start = time.perf_counter()
    for p in paths:
        with open(p, "rb") as f:
            img = Image.open(f)
            img.load()
    return time.perf_counter() - start


def thumbnails(paths: list[str]) -> float:
    from transforms import images

    start = time.perf_counter()
    for i in range(0, len(paths), 128):
        blobs = []
        for p in paths[i : i + 128]:
            with open(p, "rb") as f:
                blobs.append(f.read())
        images.thumbnail_vectors(blobs, images.DEFAULT_MAX_PIXELS, 16, False)
    return time.perf_counter() - start


def job(folder: str, out: str, *extra: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "pipelines.balance", "--input", folder, "--input_format", "images",
           "--output", out, "--output_format", "parquet", "--runner=FnApiRunner", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def subset(folder: str, n: int) -> str:
    """The first n images (round-robin over classes) in a folder of their own."""
    dest = f"{folder}-first{n}"
    if os.path.exists(os.path.join(dest, "_done")):
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    by_class = {c: sorted(glob.glob(os.path.join(folder, c, "*.png"))) for c in sorted(os.listdir(folder))
                if os.path.isdir(os.path.join(folder, c))}
    picked, i = 0, 0
    while picked < n and any(i < len(v) for v in by_class.values()):
        for c, files in by_class.items():
            if i < len(files) and picked < n:
                os.makedirs(os.path.join(dest, c), exist_ok=True)
                shutil.copy(files[i], os.path.join(dest, c))
                picked += 1
        i += 1
    open(os.path.join(dest, "_done"), "w").close()
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_images", description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--embed_images", type=int, default=400)
    a = ap.parse_args()
    folder = make_images(os.path.join(DATA, f"images_{a.images}_{a.size}"), a.images, a.size)
    paths = files_of(folder)
    n = len(paths)
    rows = []
    decode_only(paths[:500])  # warm the page cache and imports
    t_dec = decode_only(paths)
    rows.append(("decode only (Pillow, one process)", n, t_dec))
    t_th = thumbnails(paths)
    rows.append(("check + decode + 16x16 thumbnail", n, t_th))
    t_job = job(folder, os.path.join(RUNS, "images-thumbnail"))
    rows.append(("job: read, validate, thumbnail, k-means, write", n, t_job))
    if a.embed_images:
        small = subset(folder, a.embed_images)
        t_emb = job(small, os.path.join(RUNS, "images-inception"), "--cluster_on", "inception_v3",
                    "--embedding_weights", "none", "--embedding_image_size", "299")
        rows.append((f"job: inception_v3 embeddings at 299x299 ({a.embed_images} images)", a.embed_images, t_emb))
    print(f"\n{n} PNGs of {a.size}x{a.size}, {os.cpu_count()} cores\n")
    print("| what | images | s | images/s |")
    print("|---|---:|---:|---:|")
    for what, count, t in rows:
        print(f"| {what} | {count} | {t:.1f} | {count / t:,.0f} |")
    print(f"\nthumbnail / decode-only time: {t_th / t_dec:.2f}x")


if __name__ == "__main__":
    main()
