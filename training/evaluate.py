"""Evaluate a trained run on a split of any balance output: per-class report, confusion matrix.

    python -m training.evaluate --run RUN --data OUT [--split val|test|train]

OUT may be the output the run trained on or another one (e.g. a separate corpus
balanced with --strategy none): its classes are matched to the model's by label name.
Records of a label the model never saw are not scored; the report names those labels,
with how many records each has and what the model predicted for them.

Prints precision, recall, F1 and support per class, writes RUN/eval-<split>.json and
RUN/confusion-<split>.png (eval-<split>-<OUT name>.* for another output than the
run's). The model loads with Keras' safe mode.
"""

from __future__ import annotations

import argparse
import os

import keras

from training import command, remote, run_state
from training import manifest as mf
from training import model as models
from training.data import pick_reader
from training.metrics import SHOWN_CLASSES, format_report, full_table
from training.report import write_confusion_png
from training.scoring import SPLITS, score
from transforms import storage
from transforms.flag_parser import FlagParser


def parser() -> argparse.ArgumentParser:
    ap = FlagParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="Run folder of training.fit (holds model.keras).")
    ap.add_argument("--data", required=True, help="Output folder of pipelines.balance: the run's, or any "
                                                  "other whose labels the model knows.")
    ap.add_argument("--split", default="val", choices=SPLITS)
    ap.add_argument("--batch_size", type=int, default=128)
    remote.add_cache_dir(ap)
    return ap


def run(argv: list[str] | None = None) -> dict:
    """Scores the run's model.keras on the split; returns the report (also written as JSON)."""
    args = parser().parse_args(argv)
    folder = remote.RunFolder(args.run, args.cache_dir).pull([run_state.MODEL, run_state.STATE])
    model, labels = models.load(folder.path(run_state.MODEL))
    ds = mf.load(remote.local_data(args.data, args.cache_dir))
    if not set(labels) & set(ds.labels):
        raise ValueError(f"{args.data} has none of the classes the model knows: it has {ds.labels}, "
                         f"the model {labels}.")
    reader = pick_reader(ds, keras.backend.backend())
    report = {"split": args.split, "data": args.data if storage.is_remote(args.data) else os.path.abspath(args.data)} \
        | score(model, labels, ds, args.split, reader, args.batch_size)
    trained_on = run_state.read_json(folder.path(run_state.STATE))["args"]["data"] \
        if os.path.exists(folder.path(run_state.STATE)) else None
    same = trained_on is not None and _same_place(trained_on, args.data)
    name = args.split if same else f"{args.split}-{args.data.rstrip('/').rsplit('/', 1)[-1]}"
    path, png = (f"{kind}-{name}.{ext}" for kind, ext in (("eval", "json"), ("confusion", "png")))
    print(format_report(report, SHOWN_CLASSES, full_table(folder.local, f"eval-{name}.txt", report)))
    run_state.write_json(folder.path(path), report)
    write_confusion_png(report["confusion"], labels, folder.path(png), f"{name}: macro-F1 {report['macro_f1']:.3f}")
    folder.push([path, png, f"eval-{name}.txt"])
    print(f"wrote {storage.join(args.run, path)} and {storage.join(args.run, png)}")
    return report


def _same_place(a: str, b: str) -> bool:
    if storage.is_remote(a) or storage.is_remote(b):
        return a.rstrip("/") == b.rstrip("/")
    return os.path.realpath(a) == os.path.realpath(b)


def main() -> None:
    command(run)


if __name__ == "__main__":
    main()
