"""Train a final layer on pipelines.balance output, with F1-driven dynamic sampling.

    python -m training.fit --data OUT --output RUN [--epochs 5] [--sampling dynamic]
        [--weights imagenet|none|PATH] [--image_size 299] [--loss ce|weighted|focal|class_balanced]

Reads OUT/manifest.json (nothing else), builds the class mixture (tf.data with the
TensorFlow backend, a PyDataset over Parquet otherwise, e.g. KERAS_BACKEND=jax), and
trains InceptionV3's final layer on images, or a linear layer on vectors and cached
embeddings. After every epoch: per-class precision, recall and F1 on val/, the next
epoch's class shares (training/sampling.py), RUN/history.json, a checkpoint, and the
best model by val macro-F1 as RUN/model.keras. `--resume` continues a stopped run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings
import zipfile

import numpy as np

from training import command, losses
from training import manifest as mf
from training.metrics import confusion, cross_entropy, json_number, macro, per_class
from training.sampling import DynamicSampler, sample_weights

STATE = "state.json"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m training.fit", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="Output folder of pipelines.balance (holds manifest.json).")
    ap.add_argument("--output", default="run", help="Run folder (default: run).")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--epoch_size", type=int, default=None,
                    help="Samples per epoch (default: the number of train records).")
    ap.add_argument("--image_size", type=int, default=299, help="Image side fed to InceptionV3 (>= 75).")
    ap.add_argument("--weights", default="imagenet", help="InceptionV3 weights: imagenet, none or a file.")
    ap.add_argument("--inputs", default="auto", choices=("auto", "image", "vector"),
                    help="Train on images (through InceptionV3) or on the shards' vectors/embeddings "
                         "(default: vectors when the shards carry them).")
    ap.add_argument("--sampling", default="dynamic", choices=("dynamic", "balanced", "none"))
    ap.add_argument("--min_share", type=float, default=None,
                    help="Floor on a class's share (default: min(0.02, 0.5 / classes)).")
    ap.add_argument("--dynamic_rule", default="precision_recall", choices=("precision_recall", "f1"),
                    help="How val scores set the next shares: precision_recall (default: a class's weight "
                         "*= exp(rate * (P - R) * n / (n + shrink))) or f1 (Pouyanfar et al.: shares ~ 1 - F1). "
                         "See training/sampling.py and docs/BENCHMARKS.md.")
    ap.add_argument("--dynamic_rate", type=float, default=2.0, help="precision_recall: step size (default 2).")
    ap.add_argument("--dynamic_shrink", type=float, default=50.0,
                    help="precision_recall: pseudo-count of val records; a class with n val records moves "
                         "n / (n + shrink) of a step (default 50).")
    ap.add_argument("--dynamic_mix", type=float, default=1.0,
                    help="f1 rule: shares = (1 - a) * uniform + a * (1 - F1) shares; 1 (default) is Pouyanfar et al.'s.")
    ap.add_argument("--f1_smoothing", type=float, default=0.0,
                    help="Weight of past epochs in the F1 that drives the shares (0: last epoch only).")
    ap.add_argument("--prior_correction", action=argparse.BooleanOptionalAction, default=None,
                    help="With --sampling dynamic, weight each sample by uniform / its class's share, so "
                         "that the shares change what the model practises on but not the class prior "
                         "it learns (default: on with --dynamic_rule f1, off with precision_recall, whose "
                         "shares are meant to move the prior; see docs/BENCHMARKS.md).")
    ap.add_argument("--loss", default="ce", choices=losses.LOSSES)
    ap.add_argument("--cb_beta", type=float, default=0.999, help="Class-balanced loss beta (Cui et al.).")
    ap.add_argument("--focal_gamma", type=float, default=2.0)
    ap.add_argument("--learning_rate", type=float, default=None,
                    help="Adam's learning rate (default: 0.02 on vectors, 0.001 on images).")
    ap.add_argument("--l2", type=float, default=20.0,
                    help="L2 penalty on the head's kernel in LogisticRegression's units, 1/C: the loss gets "
                         "l2 / (2 n) * ||W||^2 for n train records (default 20; 0: none).")
    ap.add_argument("--standardize", default="global", choices=("global", "feature"),
                    help="Vectors: centre, then divide all features by one common scale (global, default: "
                         "pixels, embeddings, features in one unit), or each by max(its std, the median std) "
                         "(feature: features in different units, e.g. tabular columns).")
    ap.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                    help="Random rotation, flip, brightness and blur on training images (default on).")
    ap.add_argument("--mixed_precision", default="auto", choices=("auto", "on", "off"),
                    help="mixed_float16 compute (the head stays float32); auto: on when a GPU is visible.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="Continue the run in --output from its last epoch.")
    ap.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="Keras progress: 0, 1 (bar), 2.")
    return ap


def choose_inputs(ds: mf.Dataset, inputs: str) -> str:
    if inputs == "auto":
        return "vector" if ds.vector_column() else "image"
    if inputs == "vector" and not ds.vector_column():
        raise ValueError("--inputs vector: the shards carry no vectors (balance with --keep_embeddings, "
                         "or train on images).")
    if inputs == "image" and ds.payload.get("kind") != "image":
        raise ValueError("--inputs image: the shards hold feature vectors, not images.")
    return inputs


def vector_sample(ds: mf.Dataset, per_class: int = 512) -> np.ndarray:
    """A few train rows per class (first row group of each class's first shard)."""
    import pyarrow.parquet as pq

    col, rows = ds.vector_column(), []
    for c in range(ds.classes):
        if "parquet" in ds.formats:
            shards = [s for s in ds.train[c]["parquet"] if s["records"]]  # a shard can be empty
            if not shards:
                continue
            t = pq.ParquetFile(ds.paths(shards[:1])[0]).read_row_group(0, columns=[col])
            x = t.column(col).combine_chunks()
            rows.append(x.flatten().to_numpy().reshape(len(x), -1)[:per_class])
        else:
            import tensorflow as tf

            spec = {col: tf.io.FixedLenFeature([ds.vector_dim()], tf.float32)}
            d = tf.data.TFRecordDataset(ds.paths(ds.train[c]["tfrecord"]), compression_type="GZIP")
            for batch in d.take(per_class).batch(per_class):
                rows.append(tf.io.parse_example(batch, spec)[col].numpy())
    return np.concatenate(rows).astype(np.float32)


def gpu_visible(backend: str) -> bool:
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_physical_devices("GPU"))
        if backend == "jax":
            import jax

            return any(d.platform == "gpu" for d in jax.devices())
        if backend == "torch":
            import torch

            return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - no GPU runtime at all
        return False
    return False


def save_with_labels(model, path: str, labels: list[str]) -> None:
    """model.keras with the class names inside (labels.json in the archive), atomically."""
    tmp = path + ".tmp.keras"
    model.save(tmp)
    with zipfile.ZipFile(tmp, "a") as z:
        z.writestr("labels.json", json.dumps(labels))
    os.replace(tmp, path)


def labels_in(path: str) -> list[str]:
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("labels.json"))


def write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def _epoch_end_callback():
    import keras

    class EpochEnd(keras.callbacks.Callback):
        """After each epoch: val metrics, history, next shares, checkpoint, best model."""

        def __init__(self, run: str, val, y_val, sampler, labels, history, summary):
            super().__init__()
            self.run, self.val, self.y_val = run, val, y_val
            self.sampler, self.labels = sampler, labels
            self.history, self.summary = history, summary
            self.best = max((h["val_macro_f1"] for h in history), default=-1.0)
            self.started = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            with warnings.catch_warnings():  # Keras warns when a finite dataset ends, as val/ does
                warnings.simplefilter("ignore", UserWarning)
                probs = np.asarray(self.model.predict(self.val, verbose=0))
            pred = probs.argmax(axis=1)
            pc = per_class(confusion(self.y_val, pred, len(self.labels)))
            used = list(self.sampler.shares)
            entry = {
                "epoch": epoch + 1,
                "loss": float(logs.get("loss", float("nan"))),
                "val_loss": cross_entropy(probs, self.y_val),
                "val_macro_f1": macro(pc["f1"]),
                "val_accuracy": float((pred == self.y_val).mean()) if len(pred) else 0.0,
                "seconds": round(time.time() - self.started, 2),
                "classes": {label: {"f1": json_number(pc["f1"][i]), "precision": json_number(pc["precision"][i]),
                                    "recall": json_number(pc["recall"][i]), "support": int(pc["support"][i]),
                                    "share": float(used[i])}
                            for i, label in enumerate(self.labels)},
            }
            self.started = time.time()
            self.history.append(entry)
            self.sampler.update(pc["f1"], pc["precision"], pc["recall"], pc["support"])  # the next epoch's shares
            if entry["val_macro_f1"] > self.best:
                self.best = entry["val_macro_f1"]
                save_with_labels(self.model, os.path.join(self.run, "model.keras"), self.labels)
            # Alternate slots by epoch, so the checkpoint being written is never the one the
            # current state points at; then the state.
            state_path = os.path.join(self.run, STATE)
            slot = f"checkpoint-{'ab'[epoch % 2]}.keras"
            self.model.save(os.path.join(self.run, slot))
            write_json(os.path.join(self.run, "history.json"), self.history)
            write_json(state_path, {"epoch": epoch + 1, "checkpoint": slot, "sampler": self.sampler.state(),
                                    "best": self.best, "args": self.summary})
            self.summary_scalars(entry)
            shares = " ".join(f"{s:.3f}" for s in used)
            print(f"epoch {epoch + 1}: loss {entry['loss']:.4f}  val_loss {entry['val_loss']:.4f}  "
                  f"val macro-F1 {entry['val_macro_f1']:.4f}  shares used [{shares}]", flush=True)

        def summary_scalars(self, entry):
            try:
                import tensorflow as tf
            except ImportError:
                return
            writer = tf.summary.create_file_writer(os.path.join(self.run, "logs", "classes"))
            with writer.as_default():
                tf.summary.scalar("val_macro_f1", entry["val_macro_f1"], step=entry["epoch"])
                for label, c in entry["classes"].items():
                    if c["f1"] is not None:  # None: no val records for the class
                        tf.summary.scalar(f"f1/{label}", c["f1"], step=entry["epoch"])
                    tf.summary.scalar(f"share/{label}", c["share"], step=entry["epoch"])
            writer.flush()

    return EpochEnd


def _progress_bar(epochs: int):
    """Keras' progress bar, headed "Epoch e/E" of the whole run (fit is called once per epoch)."""
    import keras

    class RunProgbar(keras.callbacks.ProgbarLogger):
        def set_params(self, params):
            super().set_params(params)
            self.epochs = epochs

    return RunProgbar()


def run(argv: list[str] | None = None) -> list[dict]:
    """Trains; returns the history (one entry per epoch)."""
    import keras

    policy = keras.mixed_precision.global_policy()
    try:
        return _run(parser().parse_args(argv))
    finally:
        keras.mixed_precision.set_global_policy(policy)  # leave the process as found


def _run(args) -> list[dict]:
    import keras

    from training import data
    from training import model as models

    backend = keras.backend.backend()
    ds = mf.load(args.data)
    if not mf.val_records(ds):
        raise ValueError(f"{args.data} has no val records (balanced with --holdout_fraction 0?): the F1 that "
                         "drives the sampling and picks the best model needs them. Re-run pipelines.balance "
                         "with --holdout_fraction > 0.")
    inputs = choose_inputs(ds, args.inputs)
    reader = data.pick_reader(ds, backend)
    if reader == "tfrecord":
        mf.check_tfrecord_counts(ds)
    if args.epochs < 1 or args.batch_size < 1:
        raise ValueError(f"--epochs and --batch_size must be at least 1. Received: {args.epochs}, {args.batch_size}")
    os.makedirs(args.output, exist_ok=True)
    state_path = os.path.join(args.output, STATE)
    if os.path.exists(state_path) and not args.resume:
        raise ValueError(f"{args.output} holds a previous run: pass --resume to continue it, or a new --output.")
    if args.resume and not os.path.exists(state_path):
        raise ValueError(f"--resume: {state_path} does not exist; nothing to resume.")
    min_share = args.min_share if args.min_share is not None else min(0.02, 0.5 / ds.classes)
    prior = [n / sum(ds.output) for n in ds.output]
    keras.utils.set_random_seed(args.seed)  # the model's initial weights
    mixed = args.mixed_precision == "on" or (args.mixed_precision == "auto" and gpu_visible(backend))
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")

    state = json.load(open(state_path)) if args.resume else None
    if state:
        if args.prior_correction is None:  # auto: as the run was started (runs from before the rule: on)
            args.prior_correction = state["args"].get("prior_correction")
        fixed = ("sampling", "min_share", "dynamic_mix", "f1_smoothing", "prior_correction", "loss", "cb_beta",
                 "focal_gamma", "inputs", "image_size", "batch_size", "epoch_size", "seed", "dynamic_rule",
                 "dynamic_rate", "dynamic_shrink")
        changed = [f"--{k} was {state['args'].get(k)!r}, now {getattr(args, k)!r}" for k in fixed
                   if k in state["args"] and state["args"][k] != getattr(args, k)]
        if changed:
            raise ValueError("--resume continues a run as it was started: " + "; ".join(changed) + ".")
        sampler = DynamicSampler.from_state(ds.classes, state["sampler"])
        history = json.load(open(os.path.join(args.output, "history.json")))
        start = state["epoch"]
        model = keras.models.load_model(os.path.join(args.output, state["checkpoint"]), safe_mode=True)
        print(f"resuming {args.output} after epoch {start}")
    else:
        sampler = DynamicSampler(ds.classes, args.sampling, min_share, args.dynamic_mix, args.f1_smoothing, prior,
                                 rule=args.dynamic_rule, rate=args.dynamic_rate, shrink=args.dynamic_shrink)
        history, start = [], 0
        head = {"l2": args.l2, "train_records": max(1, sum(ds.train_input))}
        if inputs == "vector":
            model = models.build_vector_model(ds.classes, ds.vector_dim(), vector_sample(ds), args.standardize, **head)
        else:
            model = models.build_image_model(ds.classes, args.image_size, args.weights, args.augment, args.seed,
                                             **head)
        lr = args.learning_rate or (0.02 if inputs == "vector" else 1e-3)
        model.compile(optimizer=keras.optimizers.Adam(lr),
                      loss=losses.make_loss(args.loss, args.focal_gamma), metrics=["accuracy"])
    if start >= args.epochs:
        print(f"{args.output} already has {start} epochs (--epochs {args.epochs}): nothing to do.")
        return history

    budget = args.epoch_size or sum(ds.output)
    steps = max(1, math.ceil(budget / args.batch_size))
    loss_weights = losses.class_weights(args.loss, ds.train_input, args.cb_beta)
    class_w = None if loss_weights is None else np.array([loss_weights[i] for i in range(ds.classes)])
    correct = args.prior_correction if args.prior_correction is not None else sampler.rule == "f1"
    correct = correct and sampler.mode == "dynamic"  # none: the shards as written

    if reader == "tfrecord":  # class streams for the whole run, resumed where the history left them
        drawn = data.drawn_before(args.seed, [[c["share"] for c in h["classes"].values()] for h in history],
                                  steps * args.batch_size, ds.classes)
        mixture = data.TFRecordMixture(ds, inputs, args.batch_size, steps, args.seed, args.image_size, drawn)

    def epoch_input(epoch: int, shares):
        """Epoch `epoch`'s batches: a function of (seed, epoch, shares, records drawn before)."""
        weights = sample_weights(shares, class_w, correct)
        if reader == "tfrecord":
            return mixture.epoch(epoch, shares, weights)
        return data.ParquetMixture(ds, inputs, shares, weights, args.batch_size, steps, args.seed,
                                   args.image_size, epoch)

    if reader == "tfrecord":
        val = data.tf_val_stream(ds, inputs, 4 * args.batch_size, args.image_size)
    else:
        val = data.ParquetBatches(ds, inputs, 4 * args.batch_size, args.image_size)
    y_val = data.labels_of(val)
    summary = dict(vars(args)) | {"backend": backend, "reader": reader, "inputs_used": inputs,
                                  "mixed_precision": mixed}
    callbacks = [_progress_bar(args.epochs),  # first: Keras ends its epoch line before ours
                 _epoch_end_callback()(args.output, val, y_val, sampler, ds.labels, history, summary)]
    if backend == "tensorflow":
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(args.output, "logs"), write_graph=False))
    print(f"training {'InceptionV3 final layer on images' if inputs == 'image' else 'a linear layer on vectors'}: "
          f"{ds.classes} classes, {steps} steps of {args.batch_size} per epoch, sampling {sampler.mode}, "
          f"loss {args.loss}, backend {backend} ({reader} shards){', mixed_float16' if mixed else ''}")
    for epoch in range(start, args.epochs):  # one fit per epoch, on the input its shares give
        models.reseed_augmentation(model, epoch)
        model.fit(epoch_input(epoch, sampler.shares), epochs=epoch + 1, initial_epoch=epoch,
                  steps_per_epoch=steps, callbacks=callbacks, verbose=args.verbose, shuffle=False)
    from training.report import write_history_png

    write_history_png(history, os.path.join(args.output, "report.png"))
    best = max(history, key=lambda h: h["val_macro_f1"])
    logs = "logs/ (TensorBoard), " if backend == "tensorflow" else ""
    print(f"\nbest val macro-F1 {best['val_macro_f1']:.4f} at epoch {best['epoch']}. Run folder {args.output}/: "
          f"model.keras (best), history.json, report.png, {logs}checkpoint-*.keras, state.json")
    return history


def main() -> None:
    command(run)


if __name__ == "__main__":
    main()
