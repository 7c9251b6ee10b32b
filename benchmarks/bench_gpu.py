"""GPU throughput of the image trainer and of the job's embedding path, against a bare forward pass.

    KERAS_BACKEND=jax python -m benchmarks.bench_gpu [--steps 50] [--warmup 5] [--batch_size 64]
        [--image_size 299] [--mixed_precision [bfloat16|float16]] [--rows ...] [--out FILE.json]

Issue 12, goal 6: the trainer's images/s within 1.3x of a bare forward pass of the same
frozen InceptionV3, measured on a GPU machine with KERAS_BACKEND=jax. The figures go in
docs/BENCHMARKS.md. Nothing here needs TensorFlow or apache_beam (the device machine
has neither): under KERAS_BACKEND=jax the script blocks both imports (ImportError, as on
that machine, so Keras's optional TensorFlow probes skip it), asserts at the end that
neither was imported, and prints so.

On the device machine (run tool, /work/.library/device/README.md), which has JAX,
Pillow, pyarrow, h5py, rich, absl-py, ml-dtypes but not Keras: carry Keras and its
missing requirements as wheels in .whl/ (keras, namex, optree; `unzip -p
.whl/keras-*.whl '*/METADATA' | grep ^Requires-Dist` lists its needs), then

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit;
    KERAS_BACKEND=jax PYTHONUNBUFFERED=1 python3 -m benchmarks.bench_gpu --steps 50 --out $OUT/gpu.json

Weights are random (`--weights none`, the default: the machine reaches no network); the
compute is the same as with ImageNet weights. Each row is images/s in steady state: `--warmup`
calls first (the first compiles), then `--steps` timed calls of `--batch_size` images.

Rows (`--rows`, default all):
  forward_jit      the trainer's frozen base (training.model.base_network) as one jitted
                   stateless call on a device-resident batch, already scaled to [-1, 1] as the
                   model's Rescaling layer scales it (JAX only): the floor
  forward_predict  the same base through model.predict_on_batch on the same batch (outputs
                   come back to the host each call)
  train_memory     training.model.build_image_model (augmentation on, frozen base, L2 head)
                   compiled as training/fit.py compiles it (Adam 1e-3, cross-entropy,
                   accuracy), model.fit on a PyDataset that hands the same float32 [0, 255]
                   host batch (with one-hot labels and sample weights) every step: the
                   train step, host-to-device copy included, without decoding
  train_parquet    the same model and fit on the trainer's own input, training.mixtures.ParquetMixture
                   (one worker, as training.fit builds it), over Parquet shards of encoded
                   images written here with a manifest as pipelines.balance writes them
                   (DESIGN.md's contract: schema 2, id/label/image columns) and read back by
                   training.manifest.load: Pillow decoding and resizing are in the figure
  decode           transforms.images.ImageVectors(cluster_on="inception_v3").vectorize, the
                   job's check + decode + resize + scale, one thread (as one DoFn call)
  embed            the job's RunInference handler's inner loop (pipelines/inputs/image_reading.py
                   InceptionEmbedder.run_inference): transforms.inception.inception_v3 and
                   predict_on_batch over chunks of EMBED_CHUNK images of a host batch
  decode_embed     decode then embed, per batch, one after the other as the job's worker does
  train_memory_noaug  (only when named in --rows) train_memory with augment=False: how much
                   of the train step the augmentation layers cost

The ratio column is the fastest forward row's images/s over the row's: the goal is at
most 1.3 for train_parquet (the trainer as it runs) and train_memory.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = ("forward_jit", "forward_predict", "train_memory", "train_parquet", "decode", "embed", "decode_embed")
EXTRA_ROWS = ("train_memory_noaug",)  # only when --rows names them
GOAL = 1.3  # issue 12 goal 6: trainer images/s within 1.3x of the bare forward pass
L2 = 20.0  # training.fit's --l2 default
LEARNING_RATE = 1e-3  # training.fit's default on images


ABSENT = ("tensorflow", "apache_beam")  # not on the device machine


class Absent:
    """A meta path finder under which `import tensorflow` / `import apache_beam` raise ImportError,
    as on the device machine: Keras's optional probes (keras.utils.set_random_seed seeds TensorFlow
    when it can import it) then skip them, and a hard dependency fails at its import line."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ImportError(f"{name} is blocked by benchmarks.bench_gpu under KERAS_BACKEND=jax "
                              "(the device machine has neither TensorFlow nor apache_beam)")
        return None


def embed_chunk() -> int:
    """pipelines/inputs/image_reading.py's EMBED_CHUNK, read from its source: that module imports apache_beam."""
    path = os.path.join(ROOT, "pipelines", "inputs", "image_reading.py")
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EMBED_CHUNK" for t in node.targets):
            return int(ast.literal_eval(node.value))
    raise RuntimeError(f"EMBED_CHUNK is not assigned at the top level of {path}")


def sync(value) -> None:
    """Waits for a backend array (or a structure of them) to be computed."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        jax.block_until_ready(value)
    else:
        for v in value if isinstance(value, list | tuple) else [value]:
            keras.ops.convert_to_numpy(v)


def timed(call, warmup: int, steps: int) -> dict:
    """Runs call() warmup times, then steps times; the first call's seconds and the steady seconds per call."""
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        call()
    t0 = time.perf_counter()
    for _ in range(steps):
        last = call()
    sync(last)
    return {"first_call_s": first, "step_s": (time.perf_counter() - t0) / steps}


# ---------------------------------------------------------------- images

def smooth_images(n: int, side: int, seed: int) -> np.ndarray:
    """n uint8 RGB images side x side: a random 8x8 colour field upscaled, plus mild noise
    (compresses like a photo more than pure noise does)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = np.empty((n, side, side, 3), np.uint8)
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "RGB")
        field = np.asarray(coarse.resize((side, side), Image.Resampling.BILINEAR), np.int16)
        out[i] = np.clip(field + rng.integers(-8, 9, field.shape), 0, 255).astype(np.uint8)
    return out


def encode(images: np.ndarray, fmt: str) -> list[bytes]:
    from PIL import Image

    blobs = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img, "RGB").save(buf, format=fmt.upper(), **({"quality": 90} if fmt == "jpeg" else {}))
        blobs.append(buf.getvalue())
    return blobs


def write_shards(root: str, images: np.ndarray, blobs: list[bytes], classes: int) -> str:
    """OUT/parquet/train/class=cK/part-00000-of-00001.parquet and OUT/manifest.json (schema 2) as
    pipelines.balance writes them for an image corpus: columns id, label (index), image (bytes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = np.arange(len(blobs)) % classes
    entries = []
    for c in range(classes):
        idx = np.flatnonzero(labels == c)
        rel = f"parquet/train/class=c{c}/part-00000-of-00001.parquet"
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        table = pa.table({"id": pa.array([f"{i:016x}" for i in idx], pa.string()),
                          "label": pa.array(np.full(len(idx), c), pa.int64()),
                          "image": pa.array([blobs[i] for i in idx], pa.binary())})
        pq.write_table(table, os.path.join(root, rel))
        n = len(idx)
        entries.append({"label": f"c{c}", "index": c, "dir": f"class=c{c}", "input": n, "holdout": 0,
                        "train_input": n, "target": n, "output": n, "clusters": [],
                        "shards": {"parquet": [{"path": rel, "records": n}]}})
    n = len(blobs)
    manifest = {"schema_version": 2, "seed": 0, "options": {"written_by": "benchmarks.bench_gpu"},
                "payload": {"kind": "image"}, "formats": ["parquet"],
                "totals": {"read": n, "rejected": 0, "holdout": 0, "train_input": n, "output": n},
                "classes": entries, "val": {"records": 0, "shards": {"parquet": []}},
                "test": {"records": 0, "shards": {}}, "rejected": {"records": 0, "path": "rejected/"}}
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return root


# ---------------------------------------------------------------- rows

def forward_rows(args, x_uint8: np.ndarray, rows: list[str]) -> dict:
    import keras

    from training.model import base_network

    base = base_network(args.weights, args.image_size)
    x = keras.ops.convert_to_tensor(x_uint8)  # on the device
    x = keras.ops.cast(x, "float32") / 127.5 - 1.0  # the model's Rescaling(1 / 127.5, offset=-1)
    sync(x)
    out = {}
    if "forward_jit" in rows and keras.backend.backend() == "jax":
        import jax

        trainable = [v.value for v in base.trainable_variables]
        fixed = [v.value for v in base.non_trainable_variables]
        call = jax.jit(lambda t, n, batch: base.stateless_call(t, n, batch, training=False)[0])
        out["forward_jit"] = timed(lambda: call(trainable, fixed, x), args.warmup, args.steps)
    if "forward_predict" in rows:
        out["forward_predict"] = timed(lambda: base.predict_on_batch(x), args.warmup, args.steps)
    return out


def image_model(args, classes: int, train_records: int, augment: bool = True):
    """The trainer's model, compiled as training/fit.py compiles it for images with --loss ce."""
    import keras

    from training import losses
    from training.model import build_image_model

    keras.utils.set_random_seed(0)
    model = build_image_model(classes, args.image_size, args.weights, augment=augment, seed=0, l2=L2,
                              train_records=train_records)
    head = model.get_layer("head").dtype_policy
    assert head.compute_dtype == head.variable_dtype == "float32", f"the head runs in {head.name}"
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=losses.make_loss("ce"),
                  metrics=["accuracy"])
    return model


def fit_timed(model, data, warmup: int, steps: int) -> dict:
    """model.fit over warmup + steps batches; time from the end of the last warm-up batch to the end."""
    import keras

    ends = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if logs:
                sync([v for v in logs.values() if not isinstance(v, int | float)])
            ends.append(time.perf_counter())

    t0 = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=warmup + steps, callbacks=[Clock()], verbose=0, shuffle=False)
    if len(ends) != warmup + steps:
        raise RuntimeError(f"model.fit ran {len(ends)} batches, not {warmup + steps}")
    return {"first_call_s": ends[0] - t0, "step_s": (ends[-1] - ends[warmup - 1]) / steps}


def train_memory_row(args, x_uint8: np.ndarray, classes: int, augment: bool = True) -> dict:
    import keras

    n = args.batch_size
    batch = (x_uint8.astype(np.float32), np.eye(classes, dtype=np.float32)[np.arange(n) % classes],
             np.ones(n, np.float32))  # what ParquetMixture yields: float32 [0, 255], one-hot, weights

    class SameBatch(keras.utils.PyDataset):
        def __init__(self, steps):
            super().__init__(workers=1, use_multiprocessing=False)  # as ParquetMixture
            self.steps = steps

        def __len__(self):
            return self.steps

        def __getitem__(self, i):
            return batch

    model = image_model(args, classes, train_records=n, augment=augment)
    return fit_timed(model, SameBatch(args.warmup + args.steps), args.warmup, args.steps)


def train_parquet_row(args, images: np.ndarray, classes: int, folder: str) -> dict:
    from training import manifest as mf
    from training import mixtures

    blobs = encode(images, args.image_format)
    ds = mf.load(write_shards(folder, images, blobs, classes))
    shares = [1.0 / classes] * classes
    mixture = mixtures.ParquetMixture(ds, "image", shares, np.ones(classes, np.float32), args.batch_size,
                                  args.warmup + args.steps, seed=0, image_size=args.image_size, epoch=0)
    model = image_model(args, classes, train_records=sum(ds.train_input))
    row = fit_timed(model, mixture, args.warmup, args.steps)
    row["input"] = (f"ParquetMixture over {len(blobs)} {args.image_format.upper()}s of {images.shape[1]}px "
                    f"({sum(map(len, blobs)) // len(blobs)} bytes each), {classes} classes")
    return row


def embed_rows(args, images: np.ndarray, rows: list[str]) -> dict:
    from transforms.images import ImageVectors
    from transforms.inception import inception_v3

    chunk = embed_chunk()
    size = args.image_size
    blobs = encode(images[: args.batch_size], args.image_format)
    vectors = ImageVectors(cluster_on="inception_v3", embedding_image_size=size, embedding_weights=args.weights)

    def decode():
        feats, _, reasons = vectors.vectorize(blobs)
        if any(r is not None for r in reasons):
            raise RuntimeError(f"an image was rejected: {reasons}")
        return feats

    out = {}
    if "decode" in rows:
        out["decode"] = timed(decode, args.warmup, args.steps)
    if "embed" in rows or "decode_embed" in rows:
        model = inception_v3(args.weights, size)  # InceptionEmbedder.load_model

        def embed(features):  # InceptionEmbedder.run_inference, for one element
            x = features.reshape(-1, size, size, 3)
            return np.concatenate([np.asarray(model.predict_on_batch(x[i : i + chunk]), np.float32)
                                   for i in range(0, len(x), chunk)])

        features = decode()
        if "embed" in rows:
            out["embed"] = timed(lambda: embed(features), args.warmup, args.steps)
        if "decode_embed" in rows:
            out["decode_embed"] = timed(lambda: embed(decode()), args.warmup, args.steps)
    for row in out.values():
        row["chunk"] = chunk
    return out


# ---------------------------------------------------------------- report

def table(results: dict) -> tuple[str, float | None]:
    forward = [results[r]["images_s"] for r in ("forward_jit", "forward_predict") if r in results]
    ref = max(forward) if forward else None
    lines = ["| row | images/s | ms/step | first call s | forward / row |", "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        ratio = "" if ref is None else f"{ref / r['images_s']:.2f}"
        if ref is not None and name.startswith("train_"):
            r["ratio_to_forward"] = ref / r["images_s"]
            ratio += f" ({'meets' if r['ratio_to_forward'] <= GOAL else 'misses'} <= {GOAL})"
        lines.append(f"| {name} | {r['images_s']:,.1f} | {1000 * r['step_s']:.1f} | {r['first_call_s']:.1f} | "
                     f"{ratio} |")
    return "\n".join(lines), ref


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--image_size", type=int, default=299)
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50, help="Timed steps per row (after the warm-up).")
    ap.add_argument("--warmup", type=int, default=5, help="Untimed calls per row first (>= 1; the first compiles).")
    ap.add_argument("--mixed_precision", nargs="?", const="bfloat16", default=None, choices=("bfloat16", "float16"),
                    help="Keras mixed_bfloat16 policy (or mixed_float16, what training.fit sets on a GPU); "
                         "the head stays float32 as training/model.py builds it. Default: float32.")
    ap.add_argument("--weights", default="none", help="InceptionV3 weights: none (random, default) or a file.")
    ap.add_argument("--classes", type=int, default=4, help="Classes of the trained head and of the shards.")
    ap.add_argument("--image_format", default="png", choices=("png", "jpeg"), help="Encoded images' format.")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"Comma-separated rows: any of {', '.join(ROWS + EXTRA_ROWS)} (default: all but "
                         f"{', '.join(EXTRA_ROWS)}).")
    ap.add_argument("--out", default=None, help="Also write the JSON result to this file.")
    return ap


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = sorted(set(rows) - set(ROWS) - set(EXTRA_ROWS))
    if unknown or args.warmup < 1 or args.steps < 1 or args.batch_size < 1 or args.classes < 2:
        raise SystemExit(f"bad arguments: unknown rows {unknown}, or --warmup/--steps/--batch_size < 1, "
                         "or --classes < 2")
    already = [m for m in ABSENT if m in sys.modules]
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        if already:
            raise SystemExit(f"{already} imported before benchmarks.bench_gpu ran: run it as python -m")
        sys.meta_path.insert(0, Absent())
    from training.model import base_network  # noqa: F401 - the trainer's package, imported as it runs

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy(f"mixed_{args.mixed_precision}")
    if backend == "jax":
        import jax

        devices, versions = [str(d) for d in jax.devices()], {"jax": jax.__version__}
    else:
        devices, versions = ["(see the backend)"], {}
    versions |= {"keras": keras.__version__, "python": platform.python_version()}
    policy = keras.mixed_precision.global_policy().name
    print(f"backend {backend}, devices {devices}, batch {args.batch_size}, image {args.image_size}px, "
          f"policy {policy}, weights {args.weights}, steps {args.steps} after {args.warmup} warm-up, {versions}")

    images = smooth_images(max(args.batch_size, 4 * args.classes), args.image_size, seed=0)
    results: dict[str, dict] = {}
    if {"forward_jit", "forward_predict"} & set(rows):
        results |= forward_rows(args, images[: args.batch_size], rows)
    if "train_memory" in rows:
        results["train_memory"] = train_memory_row(args, images[: args.batch_size], args.classes)
    if "train_memory_noaug" in rows:
        results["train_memory_noaug"] = train_memory_row(args, images[: args.batch_size], args.classes, False)
    if "train_parquet" in rows:
        with tempfile.TemporaryDirectory(prefix="bench_gpu_") as folder:
            results["train_parquet"] = train_parquet_row(args, images, args.classes, folder)
    if {"decode", "embed", "decode_embed"} & set(rows):
        results |= embed_rows(args, images, rows)
    results = {r: results[r] for r in ROWS + EXTRA_ROWS if r in results}  # the documented order
    for r in results.values():
        r["images_s"] = args.batch_size / r["step_s"]

    text, ref = table(results)
    print(text)
    for name in ("train_parquet", "embed", "decode_embed"):
        extra = {k: v for k, v in results.get(name, {}).items() if k in ("input", "chunk")}
        if extra:
            print(f"  {name}: {extra}")
    imported = {m: m in sys.modules for m in ("tensorflow", "apache_beam")}
    print(f"imported: tensorflow {'yes' if imported['tensorflow'] else 'no'}, "
          f"apache_beam {'yes' if imported['apache_beam'] else 'no'}")
    report = {"backend": backend, "devices": devices, "versions": versions, "batch_size": args.batch_size,
              "image_size": args.image_size, "policy": policy, "weights": args.weights, "steps": args.steps,
              "warmup": args.warmup, "image_format": args.image_format, "forward_images_s": ref, "goal": GOAL,
              "rows": results, "imported": imported}
    print("BENCH_GPU_JSON " + json.dumps(report))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    if backend == "jax":  # imports were blocked: a module that needs them would have failed already
        assert not any(imported.values()), f"TensorFlow or apache_beam was imported under JAX: {imported}"
    return report


if __name__ == "__main__":
    main()
