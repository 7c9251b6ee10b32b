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
once, after the last epoch; test/ never drives the shares nor picks the model. The flags
are the fields of `TrainConfig` (training/config.py), with their defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os

import keras
import numpy as np

from training import command, config, data, losses, mixtures, remote, run_state
from training import manifest as mf
from training import model as models
from training.callbacks import EndOnAverage, RunProgbar, ValScores
from training.config import TrainConfig
from training.metrics import SHOWN_CLASSES, format_report, full_table
from training.report import write_history_png
from training.sampling import DynamicSampler, sample_weights
from training.scoring import score
from transforms.flag_parser import FlagParser
from transforms.inception import weights_argument


def parser() -> argparse.ArgumentParser:
    """The command's flags: one per `TrainConfig` field (training/config.py)."""
    return config.add_flags(FlagParser(prog="python -m training.fit", description=__doc__.split("\n\n")[0]))


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
        return train(config.from_args(parser().parse_args(argv)))
    finally:
        keras.mixed_precision.set_global_policy(policy)  # leave the process as found


def train(cfg: TrainConfig) -> list[dict]:
    """The run `cfg` describes: checks, the model (new or resumed), the epoch loop, the test score."""
    backend = keras.backend.backend()
    ds = mf.load(remote.local_data(cfg.data, cfg.cache_dir))
    if not mf.val_records(ds):
        raise ValueError(f"{cfg.data} has no val records (balanced with --holdout_fraction 0?): the F1 that "
                         "drives the sampling and picks the best model needs them. Re-run pipelines.balance "
                         "with --holdout_fraction > 0.")
    inputs = choose_inputs(ds, cfg.inputs)
    reader = data.pick_reader(ds, backend)
    if reader == "tfrecord":
        mf.check_tfrecord_counts(ds)
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ValueError(f"--epochs and --batch_size must be at least 1. Received: {cfg.epochs}, {cfg.batch_size}")
    folder = remote.RunFolder(cfg.output, cfg.cache_dir).pull()
    run_dir = folder.local
    os.makedirs(run_dir, exist_ok=True)
    run_state.check_folder(run_dir, cfg.resume, cfg.output)
    min_share = cfg.min_share if cfg.min_share is not None else min(0.02, 0.5 / ds.classes)
    prior = [n / sum(ds.output) for n in ds.output]
    keras.utils.set_random_seed(cfg.seed)  # the model's initial weights
    gpu = gpu_visible(backend)  # said in the start line: TensorFlow's own CUDA messages are quieted
    mixed = cfg.mixed_precision == "on" or (cfg.mixed_precision == "auto" and gpu)
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")

    if cfg.resume:
        settings = cfg.settings()
        state, sampler, history = run_state.resumed(run_dir, settings, ds.classes)  # completes settings
        cfg = dataclasses.replace(cfg, **settings)
        start = state["epoch"]
        if start >= cfg.epochs:
            print(f"{cfg.output} already has {start} epochs (--epochs {cfg.epochs}): nothing to do.")
            return run_state.read_json(os.path.join(run_dir, run_state.HISTORY))
        model = keras.models.load_model(os.path.join(run_dir, state["checkpoint"]), safe_mode=True)
        print(f"resuming {cfg.output} after epoch {start}")
    else:
        sampler = DynamicSampler(ds.classes, cfg.sampling, min_share, cfg.dynamic_mix, cfg.f1_smoothing, prior,
                                 rule=cfg.dynamic_rule, rate=cfg.dynamic_rate, shrink=cfg.dynamic_shrink)
        history, start = [], 0
        head = {"l2": cfg.l2, "train_records": max(1, sum(ds.train_input))}
        if inputs == "vector":
            model = models.build_vector_model(ds.classes, ds.vector_dim(), data.vector_sample(ds), cfg.standardize,
                                              **head)
        else:
            model = models.build_image_model(ds.classes, cfg.image_size, cfg.weights, cfg.augment, cfg.seed,
                                             **head)
        lr = cfg.learning_rate or (0.02 if inputs == "vector" else 1e-3)
        if not 0 <= cfg.weight_averaging < 1:
            raise ValueError(f"--weight_averaging must be in [0, 1). Received: {cfg.weight_averaging}")
        averaging = {"use_ema": True, "ema_momentum": cfg.weight_averaging} if cfg.weight_averaging else {}
        model.compile(optimizer=keras.optimizers.Adam(lr, **averaging),
                      loss=losses.make_loss(cfg.loss, cfg.focal_gamma), metrics=["accuracy"])

    budget = cfg.epoch_size or sum(ds.output)
    steps = max(1, math.ceil(budget / cfg.batch_size))
    loss_weights = losses.class_weights(cfg.loss, ds.train_input, cfg.cb_beta)
    class_w = None if loss_weights is None else np.array([loss_weights[i] for i in range(ds.classes)])
    correct = cfg.prior_correction if cfg.prior_correction is not None else sampler.rule == "f1"
    correct = correct and sampler.mode == "dynamic"  # none: the shards as written

    if reader == "tfrecord":  # class streams for the whole run, resumed where the history left them
        drawn = mixtures.drawn_before(cfg.seed, run_state.shares_by_epoch(history), steps * cfg.batch_size,
                                  ds.classes)
        mixture = mixtures.TFRecordMixture(ds, inputs, cfg.batch_size, steps, cfg.seed, cfg.image_size, drawn)

    def epoch_input(epoch: int, shares):
        """Epoch `epoch`'s batches: a function of (seed, epoch, shares, records drawn before)."""
        weights = sample_weights(shares, class_w, correct)
        if reader == "tfrecord":
            return mixture.epoch(epoch, shares, weights)
        return mixtures.ParquetMixture(ds, inputs, shares, weights, cfg.batch_size, steps, cfg.seed,
                                   cfg.image_size, epoch)

    val = data.split_stream(ds, reader, inputs, 4 * cfg.batch_size, cfg.image_size)
    settings = cfg.settings() | {"backend": backend, "reader": reader, "inputs_used": inputs,
                                   "mixed_precision": mixed}
    recorder = run_state.Recorder(run_dir, sampler, ds.labels, history, settings)
    callbacks = [RunProgbar(cfg.epochs),  # first: Keras ends its epoch line before ours
                 EndOnAverage(),  # before ValScores: val scores, and model.keras keeps, the averaged weights
                 ValScores(val, data.labels_of(val), ds.labels, recorder.record)]
    if backend == "tensorflow":
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), write_graph=False))
    print(f"training {'InceptionV3 final layer on images' if inputs == 'image' else 'a linear layer on vectors'}: "
          f"{ds.classes} classes, {steps} steps of {cfg.batch_size} per epoch, sampling {sampler.mode}, "
          f"loss {cfg.loss}, backend {backend} on {'GPU' if gpu else 'CPU'} ({reader} shards)"
          f"{', mixed_float16' if mixed else ''}")
    if inputs == "image" and weights_argument(cfg.weights) is None:
        print("note: InceptionV3 has random weights (--weights none), so its features carry no information about "
              "the images and F1 stays near chance: this run shows the path, not accuracy. Pass --weights imagenet "
              "(online) or a weights file to learn; on the cached embeddings (--inputs vector) the same loop learns.")
    for epoch in range(start, cfg.epochs):  # one fit per epoch, on the input its shares give
        models.reseed_augmentation(model, epoch)
        model.fit(epoch_input(epoch, sampler.shares), epochs=epoch + 1, initial_epoch=epoch,
                  steps_per_epoch=steps, callbacks=callbacks, verbose=cfg.verbose, shuffle=False)
        folder.push()  # an object-store run folder gets the epoch's files
    write_history_png(history, os.path.join(run_dir, "report.png"))
    best = run_state.best_epoch(history)
    print(f"\nbest val macro-F1 {best['val_macro_f1']:.4f} at epoch {best['epoch']}")
    if mf.records_in(ds.test):
        test_score(recorder, ds, reader, 4 * cfg.batch_size)
    folder.push()
    logs = "logs/ (TensorBoard), " if backend == "tensorflow" else ""
    print(f"Run folder {cfg.output}/: model.keras (best), history.json, report.png, {logs}"
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
