"""The settings of python -m training.fit: `TrainConfig`, one typed field per flag.

Each field is the flag --<name>: its type, its default (written once, in the field; a
field without one is a required flag) and, in `field(metadata=...)` through `setting`,
its help text, its choices and whether a `--resume` must keep it (`KEPT_ON_RESUME`).
`add_flags` builds the argparse flags from the fields, and every flag's help ends with
its default unless the text already says it. `fixed_settings` lists the kept settings,
which training/run_state.py checks on resume.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import MISSING, dataclass, field

from training.losses import LOSSES
from training.remote import CACHE_DIR_HELP

# Metadata keys. KEPT_ON_RESUME marks a setting a resumed run must share with its start:
# it decides each epoch's batches, or it is built into the model and its optimizer, which
# a resume loads as they were saved (so a new value could not take effect, and is refused
# rather than ignored). BEFORE_FLAG: what a run started before the flag existed did instead.
HELP, CHOICES, ACTION, KEPT_ON_RESUME, BEFORE_FLAG = "help", "choices", "action", "kept_on_resume", "before_flag"


def setting(default=MISSING, help: str = "", *, choices: tuple | None = None, kept: bool = False,
            before_flag=MISSING, action: str | None = None):
    """A `TrainConfig` field: `default` (none: a required flag) and the flag's metadata."""
    meta = {HELP: help, CHOICES: choices, ACTION: action, KEPT_ON_RESUME: kept}
    if before_flag is not MISSING:
        meta[BEFORE_FLAG] = before_flag
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TrainConfig:
    """training.fit's settings, in the order of its flags."""

    data: str = setting(help="Output folder of pipelines.balance (holds manifest.json); local, gs:// or s3://.")
    output: str = setting("run", "Run folder (default: %(default)s); local, gs:// or s3:// (written locally "
                                 "under --cache_dir, uploaded after every epoch).")
    cache_dir: str | None = setting(None, CACHE_DIR_HELP)
    epochs: int = setting(5, "Epochs to train.")
    batch_size: int = setting(32, "Samples per batch.", kept=True)
    epoch_size: int | None = setting(None, "Samples per epoch (default: the number of train records).", kept=True)
    image_size: int = setting(299, "Image side fed to InceptionV3 (>= 75).", kept=True)
    weights: str = setting("imagenet", "InceptionV3 weights: imagenet, none or a file.", kept=True)
    inputs: str = setting("auto", "Train on images (through InceptionV3) or on the shards' vectors/embeddings "
                                  "(default: %(default)s: vectors when the shards carry them).",
                          choices=("auto", "image", "vector"), kept=True)
    sampling: str = setting("dynamic", "How each epoch's class shares are set: from last epoch's val scores "
                                       "(dynamic), uniform (balanced), or the shards' own (none).",
                            choices=("dynamic", "balanced", "none"), kept=True)
    min_share: float | None = setting(None, "Floor on a class's share (default: min(0.02, 0.5 / classes)).",
                                      kept=True)
    dynamic_rule: str = setting("precision_recall",
                                "How val scores set the next shares (default: %(default)s): precision_recall "
                                "(a class's weight *= exp(rate * (P - R) * n / (n + shrink))) or f1 (Pouyanfar "
                                "et al.: shares ~ 1 - F1). See training/sampling.py and docs/BENCHMARKS.md.",
                                choices=("precision_recall", "f1"), kept=True)
    dynamic_rate: float = setting(2.0, "precision_recall: step size.", kept=True)
    dynamic_shrink: float = setting(50.0, "precision_recall: pseudo-count of val records; a class with n val "
                                          "records moves n / (n + shrink) of a step.", kept=True)
    dynamic_mix: float = setting(1.0, "f1 rule: shares = (1 - a) * uniform + a * (1 - F1) shares; 1 is "
                                      "Pouyanfar et al.'s.", kept=True)
    f1_smoothing: float = setting(0.0, "Weight of past epochs in the F1 that drives the shares (0: last epoch "
                                       "only).", kept=True)
    prior_correction: bool | None = setting(
        None, "With --sampling dynamic, weight each sample by uniform / its class's share, so that the shares "
              "change what the model practises on but not the class prior it learns (default: on with "
              "--dynamic_rule f1, off with precision_recall, whose shares are meant to move the prior; see "
              "docs/BENCHMARKS.md).", kept=True)
    loss: str = setting("ce", "Loss: cross-entropy, class-weighted, focal or class-balanced.", choices=LOSSES,
                        kept=True)
    cb_beta: float = setting(0.999, "Class-balanced loss beta (Cui et al.).", kept=True)
    focal_gamma: float = setting(2.0, "Focal loss gamma.", kept=True)
    learning_rate: float | None = setting(None, "Adam's learning rate (default: 0.02 on vectors, 0.001 on "
                                                "images).", kept=True)
    weight_averaging: float = setting(
        0.9, "Momentum of the moving average of the head's weights, updated every step; each epoch ends on the "
             "average, which val scores and model.keras keeps (default: %(default)s: about the last 10 steps; "
             "0: off, the last step's weights).", kept=True, before_flag=0.0)  # before: no average kept
    l2: float = setting(20.0, "L2 penalty on the head's kernel in LogisticRegression's units, 1/C: the loss gets "
                              "l2 / (2 n) * ||W||^2 for n train records (default: %(default)s; 0: none).",
                        kept=True)
    standardize: str = setting("global", "Vectors: centre, then divide all features by one common scale (global: "
                                         "pixels, embeddings, features in one unit), or each by max(its std, the "
                                         "median std) (feature: features in different units, e.g. tabular "
                                         "columns).", choices=("global", "feature"), kept=True)
    augment: bool = setting(True, "Random rotation, flip, brightness and blur on training images.", kept=True)
    mixed_precision: str = setting("auto", "mixed_float16 compute (the head stays float32); auto: on when a GPU "
                                           "is visible.", choices=("auto", "on", "off"))
    seed: int = setting(0, "Seed of the model's initial weights, the sampling and the augmentation.", kept=True)
    resume: bool = setting(False, "Continue the run in --output from its last epoch.", action="store_true")
    verbose: int = setting(1, "Keras progress: 0, 1 (bar), 2.", choices=(0, 1, 2))

    def settings(self) -> dict:
        """The settings by name, in flag order (what state.json records)."""
        return dataclasses.asdict(self)


def fixed_settings(config: type = TrainConfig) -> tuple[str, ...]:
    """The settings a `--resume` must keep: the fields marked KEPT_ON_RESUME, in flag order."""
    return tuple(f.name for f in dataclasses.fields(config) if f.metadata.get(KEPT_ON_RESUME))


def before_flag(config: type = TrainConfig) -> dict:
    """Settings a run may have started before they existed, and what such a run did instead."""
    return {f.name: f.metadata[BEFORE_FLAG] for f in dataclasses.fields(config) if BEFORE_FLAG in f.metadata}


def help_text(text: str, default) -> str:
    """`text`, ending with the flag's default unless it says it already (%(default)s, or in words
    for a default of None, which stands for a value chosen at run time)."""
    if "%(default)" in text or default is None or default is MISSING:
        return text
    if text.endswith("."):
        return f"{text[:-1]} (default: %(default)s)."
    return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def add_flags(ap: argparse.ArgumentParser, config: type = TrainConfig) -> argparse.ArgumentParser:
    """One flag per field of `config`: --name, its type, default, choices and help."""
    types = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        kind = next(t for t in typing.get_args(types[f.name]) or (types[f.name],) if t is not type(None))
        kwargs = {"required": True} if f.default is MISSING else {"default": f.default}
        if f.metadata.get(ACTION):
            kwargs["action"] = f.metadata[ACTION]
        elif kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif kind is not str:
            kwargs["type"] = kind
        if f.metadata.get(CHOICES):
            kwargs["choices"] = f.metadata[CHOICES]
        action = ap.add_argument(f"--{f.name}", **kwargs)
        # set after the action is made: Python 3.10's BooleanOptionalAction adds a default of its own
        action.help = help_text(f.metadata.get(HELP, ""), f.default)
    return ap


def from_args(ns: argparse.Namespace, config: type = TrainConfig):
    """The parsed flags as a `config`."""
    return config(**vars(ns))
