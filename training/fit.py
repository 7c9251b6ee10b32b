"""Train a final layer on pipelines.balance output, with F1-driven dynamic sampling.

    python -m training.fit --data OUT --output RUN [--epochs 5] [--sampling dynamic]
        [--weights imagenet|none|PATH] [--image_size 299] [--loss ce|weighted|focal|class_balanced]

Reads OUT/manifest.json (nothing else), builds the class mixture (tf.data with the
TensorFlow backend, a PyDataset over Parquet otherwise, e.g. KERAS_BACKEND=jax), and
trains InceptionV3's final layer on images, or a linear layer on vectors and cached
embeddings. After every epoch (training/run_state.py): per-class precision, recall and
F1 on val/, the next epoch's class shares (training/sampling.py), RUN/history.json, a
checkpoint, and the best model by val macro-F1 as RUN/model.keras. `--resume`
continues a stopped run. When OUT has a test split, the best model is scored on it
once, after the last epoch; test/ never drives the shares nor picks the model.
"""

from __future__ import annotations

import argparse
import math
import os

import keras
import numpy as np

from training import command, data, losses, remote, run_state
from training import manifest as mf
from training import model as models
from training.callbacks import EndOnAverage, RunProgbar, ValScores
from training.metrics import SHOWN_CLASSES, format_report, full_table
from training.report import write_history_png
from training.sampling import DynamicSampler, sample_weights
from training.scoring import score
from transforms.flag_parser import FlagParser
from transforms.inception import weights_argument


def parser() -> argparse.ArgumentParser:
    ap = FlagParser(prog="python -m training.fit", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="Output folder of pipelines.balance (holds manifest.json); "
                                                  "local, gs:// or s3://.")
    ap.add_argument("--output", default="run", help="Run folder (default: run); local, gs:// or s3:// (written "
                                                    "locally under --cache_dir, uploaded after every epoch).")
    remote.add_cache_dir(ap)
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
    ap.add_argument("--weight_averaging", type=float, default=0.9,
                    help="Momentum of the moving average of the head's weights, updated every step; each epoch "
                         "ends on the average, which val scores and model.keras keeps (default 0.9: about the "
                         "last 10 steps; 0: off, the last step's weights).")
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
    """`--inputs` resolved against what the shards carry: vector or image."""
    if inputs == "auto":
        return "vector" if ds.vector_column() else "image"
    if inputs == "vector" and not ds.vector_column():
        raise ValueError("--inputs vector: the shards carry no vectors (balance with --keep_embeddings, "
                         "or train on images).")
    if inputs == "image" and ds.payload.get("kind") != "image":
        raise ValueError("--inputs image: the shards hold feature vectors, not images.")
    return inputs


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


def run(argv: list[str] | None = None) -> list[dict]:
    """Trains; returns the history (one entry per epoch)."""
    policy = keras.mixed_precision.global_policy()
    try:
        return train(parser().parse_args(argv))
    finally:
        keras.mixed_precision.set_global_policy(policy)  # leave the process as found


def train(args: argparse.Namespace) -> list[dict]:
    """The run `args` describe: checks, the model (new or resumed), the epoch loop, the test score."""
    backend = keras.backend.backend()
    ds = mf.load(remote.local_data(args.data, args.cache_dir))
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
    folder = remote.RunFolder(args.output, args.cache_dir).pull()
    run_dir = folder.local
    os.makedirs(run_dir, exist_ok=True)
    run_state.check_folder(run_dir, args.resume, args.output)
    min_share = args.min_share if args.min_share is not None else min(0.02, 0.5 / ds.classes)
    prior = [n / sum(ds.output) for n in ds.output]
    keras.utils.set_random_seed(args.seed)  # the model's initial weights
    gpu = gpu_visible(backend)  # said in the start line: TensorFlow's own CUDA messages are quieted
    mixed = args.mixed_precision == "on" or (args.mixed_precision == "auto" and gpu)
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")

    if args.resume:
        state, sampler, history = run_state.resumed(run_dir, vars(args), ds.classes)  # completes args
        start = state["epoch"]
        if start >= args.epochs:
            print(f"{args.output} already has {start} epochs (--epochs {args.epochs}): nothing to do.")
            return run_state.read_json(os.path.join(run_dir, run_state.HISTORY))
        model = keras.models.load_model(os.path.join(run_dir, state["checkpoint"]), safe_mode=True)
        print(f"resuming {args.output} after epoch {start}")
    else:
        sampler = DynamicSampler(ds.classes, args.sampling, min_share, args.dynamic_mix, args.f1_smoothing, prior,
                                 rule=args.dynamic_rule, rate=args.dynamic_rate, shrink=args.dynamic_shrink)
        history, start = [], 0
        head = {"l2": args.l2, "train_records": max(1, sum(ds.train_input))}
        if inputs == "vector":
            model = models.build_vector_model(ds.classes, ds.vector_dim(), data.vector_sample(ds), args.standardize,
                                              **head)
        else:
            model = models.build_image_model(ds.classes, args.image_size, args.weights, args.augment, args.seed,
                                             **head)
        lr = args.learning_rate or (0.02 if inputs == "vector" else 1e-3)
        if not 0 <= args.weight_averaging < 1:
            raise ValueError(f"--weight_averaging must be in [0, 1). Received: {args.weight_averaging}")
        averaging = {"use_ema": True, "ema_momentum": args.weight_averaging} if args.weight_averaging else {}
        model.compile(optimizer=keras.optimizers.Adam(lr, **averaging),
                      loss=losses.make_loss(args.loss, args.focal_gamma), metrics=["accuracy"])

    budget = args.epoch_size or sum(ds.output)
    steps = max(1, math.ceil(budget / args.batch_size))
    loss_weights = losses.class_weights(args.loss, ds.train_input, args.cb_beta)
    class_w = None if loss_weights is None else np.array([loss_weights[i] for i in range(ds.classes)])
    correct = args.prior_correction if args.prior_correction is not None else sampler.rule == "f1"
    correct = correct and sampler.mode == "dynamic"  # none: the shards as written

    if reader == "tfrecord":  # class streams for the whole run, resumed where the history left them
        drawn = data.drawn_before(args.seed, run_state.shares_by_epoch(history), steps * args.batch_size,
                                  ds.classes)
        mixture = data.TFRecordMixture(ds, inputs, args.batch_size, steps, args.seed, args.image_size, drawn)

    def epoch_input(epoch: int, shares):
        """Epoch `epoch`'s batches: a function of (seed, epoch, shares, records drawn before)."""
        weights = sample_weights(shares, class_w, correct)
        if reader == "tfrecord":
            return mixture.epoch(epoch, shares, weights)
        return data.ParquetMixture(ds, inputs, shares, weights, args.batch_size, steps, args.seed,
                                   args.image_size, epoch)

    val = data.split_stream(ds, reader, inputs, 4 * args.batch_size, args.image_size)
    settings = dict(vars(args)) | {"backend": backend, "reader": reader, "inputs_used": inputs,
                                   "mixed_precision": mixed}
    recorder = run_state.Recorder(run_dir, sampler, ds.labels, history, settings)
    callbacks = [RunProgbar(args.epochs),  # first: Keras ends its epoch line before ours
                 EndOnAverage(),  # before ValScores: val scores, and model.keras keeps, the averaged weights
                 ValScores(val, data.labels_of(val), ds.labels, recorder.record)]
    if backend == "tensorflow":
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), write_graph=False))
    print(f"training {'InceptionV3 final layer on images' if inputs == 'image' else 'a linear layer on vectors'}: "
          f"{ds.classes} classes, {steps} steps of {args.batch_size} per epoch, sampling {sampler.mode}, "
          f"loss {args.loss}, backend {backend} on {'GPU' if gpu else 'CPU'} ({reader} shards)"
          f"{', mixed_float16' if mixed else ''}")
    if inputs == "image" and weights_argument(args.weights) is None:
        print("note: InceptionV3 has random weights (--weights none), so its features carry no information about "
              "the images and F1 stays near chance: this run shows the path, not accuracy. Pass --weights imagenet "
              "(online) or a weights file to learn; on the cached embeddings (--inputs vector) the same loop learns.")
    for epoch in range(start, args.epochs):  # one fit per epoch, on the input its shares give
        models.reseed_augmentation(model, epoch)
        model.fit(epoch_input(epoch, sampler.shares), epochs=epoch + 1, initial_epoch=epoch,
                  steps_per_epoch=steps, callbacks=callbacks, verbose=args.verbose, shuffle=False)
        folder.push()  # an object-store run folder gets the epoch's files
    write_history_png(history, os.path.join(run_dir, "report.png"))
    best = run_state.best_epoch(history)
    print(f"\nbest val macro-F1 {best['val_macro_f1']:.4f} at epoch {best['epoch']}")
    if mf.records_in(ds.test):
        test_score(recorder, ds, reader, 4 * args.batch_size)
    folder.push()
    logs = "logs/ (TensorBoard), " if backend == "tensorflow" else ""
    print(f"Run folder {args.output}/: model.keras (best), history.json, report.png, {logs}"
          "checkpoint-*.keras, state.json")
    return history


def test_score(recorder: run_state.Recorder, ds: mf.Dataset, reader: str, batch_size: int) -> dict:
    """Scores model.keras (the best val epoch) on test/, once; prints it and records it in the history."""
    model, labels = models.load(os.path.join(recorder.run, run_state.MODEL))
    report = score(model, labels, ds, "test", reader, batch_size)
    entry = recorder.record_test(report)
    print(f"test (scored once, model of epoch {entry['epoch']}): macro-F1 {report['macro_f1']:.4f}")
    print(format_report(report, SHOWN_CLASSES, full_table(recorder.run, "test-report.txt", report)))
    return report


def main() -> None:
    command(run)


if __name__ == "__main__":
    main()
