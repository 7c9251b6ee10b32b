"""The run folder of training.fit: what each epoch records, and what a resume reads back.

    RUN/history.json      one entry per epoch (epoch, loss, val_loss, val_macro_f1,
                          val_accuracy, seconds, classes: {label: f1, precision, recall,
                          support, share}); once training ends, when OUT has a test split,
                          the entry of the epoch whose model is model.keras also holds
                          `test` (records, macro_f1, accuracy, classes)
    RUN/state.json        epoch, sampler state, best val macro-F1, which checkpoint, the settings
    RUN/checkpoint-a.keras, checkpoint-b.keras   alternating: a kill while one is written
                          leaves state.json pointing at the other, complete one
    RUN/model.keras       the best epoch by val macro-F1, class names inside

`Recorder.record` is plain code: it takes an epoch's measured entry and the model, and
writes the history, the next shares, the best model, the checkpoint and the state, in
that order (state last, so what it points at is always complete).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from training.config import TrainConfig, before_flag, fixed_settings
from training.model import save_with_labels
from training.sampling import DynamicSampler
from transforms import storage

HISTORY, STATE, MODEL = "history.json", "state.json", "model.keras"


def write_json(path: str, obj) -> None:
    """Writes JSON atomically (a temporary file, then a rename)."""
    storage.write_bytes(path, json.dumps(obj, indent=1).encode())


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def shares_line(labels: list[str], used, following, limit: int = 40) -> str:
    """The epoch line's shares: every class's up to `limit` classes; past that min / median /
    max, and the classes whose share the next epoch moves most."""
    used = np.asarray(used, np.float64)
    if len(used) <= limit:
        return "shares used [" + " ".join(f"{s:.3f}" for s in used) + "]"
    change = np.asarray(following, np.float64) / np.maximum(used, 1e-12)
    moved = np.argsort(-np.abs(np.log(np.maximum(change, 1e-12))), kind="stable")[:3]
    most = ", ".join(f"{labels[i]} {used[i]:.4f}->{following[i]:.4f}" for i in moved)
    return (f"shares used min {used.min():.4f} median {np.median(used):.4f} max {used.max():.4f} "
            f"({len(used)} classes); moved most: {most}")


def check_folder(run: str, resume: bool, named: str | None = None) -> None:
    """A new run needs a folder without a run in it; a resume needs one. `named`: the folder
    as the user gave it, when `run` is its local working copy."""
    named = named or run
    state = os.path.join(run, STATE)
    if os.path.exists(state) and not resume:
        raise ValueError(f"{named} holds a previous run: pass --resume to continue it, or a new --output.")
    if resume and not os.path.exists(state):
        raise ValueError(f"--resume: {named.rstrip('/')}/{STATE} does not exist; nothing to resume.")


def resumed(run: str, settings: dict, classes: int,
            config: type = TrainConfig) -> tuple[dict, DynamicSampler, list[dict]]:
    """(state, sampler, history) of a stopped run, after checking `settings` keep the ones
    `config` marks kept_on_resume (`fixed_settings(config)`; training/config.py says why).

    `settings` (the command's, `TrainConfig.settings()`) is completed in place first:
    --prior_correction left to auto takes the run's own value, and a setting the run
    predates takes what the run did then (`before_flag(config)`).
    """
    state = read_json(os.path.join(run, STATE))
    if settings["prior_correction"] is None:  # auto: as the run was started (runs from before the rule: on)
        settings["prior_correction"] = state["args"].get("prior_correction")
    settings.update({k: v for k, v in before_flag(config).items() if k not in state["args"]})
    changed = [f"--{k} was {_given(state['args'][k])}, now {_given(settings[k])}" for k in fixed_settings(config)
               if k in state["args"] and state["args"][k] != settings[k]]
    if changed:
        raise ValueError("--resume continues a run as it was started: " + "; ".join(changed) + ".")
    # state.json is written last: a history longer than its epoch (a push or a kill between
    # the two) holds an epoch the resume runs again
    history = [{k: v for k, v in h.items() if k != "test"}
               for h in read_json(os.path.join(run, HISTORY))[:state["epoch"]]]
    return state, DynamicSampler.from_state(classes, state["sampler"]), history


def _given(value) -> str:
    return "not given (the default)" if value is None else repr(value)


def shares_by_epoch(history: list[dict]) -> list[list[float]]:
    """The class shares each recorded epoch drew with."""
    return [[c["share"] for c in h["classes"].values()] for h in history]


def best_epoch(history: list[dict]) -> dict:
    """The entry whose model is model.keras: the highest val macro-F1, the earliest on a tie."""
    return max(history, key=lambda h: h["val_macro_f1"])


class Recorder:
    """Records each epoch of a run in its folder (history, shares, best model, checkpoint, state)."""

    def __init__(self, run: str, sampler: DynamicSampler, labels: list[str], history: list[dict], settings: dict):
        self.run, self.sampler, self.labels = run, sampler, labels
        self.history, self.settings = history, settings
        self.best = max((h["val_macro_f1"] for h in history), default=-1.0)
        self.started = time.time()

    def record(self, epoch: int, measured: dict, model) -> dict:
        """Epoch `epoch` (0-based) as measured on val (`ValScores`): returns its history entry."""
        used = list(self.sampler.shares)
        entry = {"epoch": epoch + 1, **{k: measured[k] for k in ("loss", "val_loss", "val_macro_f1", "val_accuracy")},
                 "seconds": round(time.time() - self.started, 2),
                 "classes": {label: c | {"share": float(used[i])}
                             for i, (label, c) in enumerate(measured["classes"].items())}}
        self.started = time.time()
        self.history.append(entry)
        self.sampler.update(*(np.array([np.nan if c[k] is None else c[k] for c in measured["classes"].values()],
                                       np.float64) for k in ("f1", "precision", "recall", "support")))
        if entry["val_macro_f1"] > self.best:
            self.best = entry["val_macro_f1"]
            save_with_labels(model, os.path.join(self.run, MODEL), self.labels)
        # Alternate slots by epoch, so the checkpoint being written is never the one the
        # current state points at; then the state.
        slot = f"checkpoint-{'ab'[epoch % 2]}.keras"
        model.save(os.path.join(self.run, slot))
        write_json(os.path.join(self.run, HISTORY), self.history)
        write_json(os.path.join(self.run, STATE), {"epoch": epoch + 1, "checkpoint": slot,
                                                   "sampler": self.sampler.state(), "best": self.best,
                                                   "args": self.settings})
        self.scalars(entry)
        print(f"epoch {epoch + 1}: loss {entry['loss']:.4f}  val_loss {entry['val_loss']:.4f}  "
              f"val macro-F1 {entry['val_macro_f1']:.4f}  {shares_line(self.labels, used, self.sampler.shares)}",
              flush=True)
        return entry

    def record_test(self, report: dict) -> dict:
        """Adds the test score of model.keras to its epoch's entry; returns that entry."""
        best = best_epoch(self.history)
        best["test"] = {k: report[k] for k in ("records", "macro_f1", "accuracy", "classes")}
        write_json(os.path.join(self.run, HISTORY), self.history)
        return best

    def scalars(self, entry: dict) -> None:
        """Per-class F1 and shares in TensorBoard (RUN/logs/classes), where TensorFlow is installed."""
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
