"""Evaluate a trained run on the val shards (or --split train): per-class report, confusion matrix.

    python -m training.evaluate --run RUN --data OUT [--split val|train]

Prints precision, recall, F1 and support per class, writes RUN/eval-<split>.json and
RUN/confusion-<split>.png. The model loads with Keras' safe mode.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings

import numpy as np

from training import command
from training import manifest as mf
from training.metrics import confusion, json_number, macro, per_class


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="Run folder of training.fit (holds model.keras).")
    ap.add_argument("--data", required=True, help="Output folder of pipelines.balance.")
    ap.add_argument("--split", default="val", choices=("val", "train"))
    ap.add_argument("--batch_size", type=int, default=128)
    return ap


def run(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    import keras

    from training import data
    from training.fit import labels_in
    from training.report import write_confusion_png

    path = os.path.join(args.run, "model.keras")
    if not os.path.exists(path):
        raise ValueError(f"{path} does not exist: train first (python -m training.fit).")
    labels = labels_in(path)
    ds = mf.load(args.data)
    if labels != ds.labels:
        raise ValueError(f"{path} was trained on classes {labels}, {args.data} has {ds.labels}.")
    model = keras.models.load_model(path, safe_mode=True)
    shape = model.inputs[0].shape
    inputs = "vector" if len(shape) == 2 else "image"
    image_size = int(shape[1]) if inputs == "image" else 0
    reader = data.pick_reader(ds, keras.backend.backend())
    if args.split == "val":
        shards = ds.val[reader]
        if not mf.val_records(ds):
            raise ValueError(f"{args.data} has no val records: evaluate with --split train, or re-run "
                             "pipelines.balance with --holdout_fraction > 0.")
    else:
        shards = [s for c in ds.train for s in c[reader]]
    if reader == "tfrecord":
        stream = data.tf_val_stream(ds, inputs, args.batch_size, image_size, shards)
    else:
        stream = data.ParquetBatches(ds, inputs, args.batch_size, image_size, shards)
    y = data.labels_of(stream)
    with warnings.catch_warnings():  # Keras warns when a finite dataset ends
        warnings.simplefilter("ignore", UserWarning)
        pred = np.asarray(model.predict(stream, verbose=0)).argmax(axis=1)
    cm = confusion(y, pred, ds.classes)
    pc = per_class(cm)
    report = {"split": args.split, "records": int(len(y)), "macro_f1": macro(pc["f1"]),
              "accuracy": float((pred == y).mean()) if len(y) else 0.0,
              "classes": {label: {k: json_number(pc[k][i]) if k != "support" else int(pc[k][i])
                                  for k in ("precision", "recall", "f1", "support")}
                          for i, label in enumerate(labels)},
              "confusion": cm.tolist()}
    width = max(5, *(len(x) for x in labels))
    print(f"{'class':<{width}}  precision  recall     f1  support")
    def num(v, w):
        return f"{v:{w}.3f}" if v is not None else f"{'-':>{w}}"

    for label, c in report["classes"].items():
        print(f"{label:<{width}}  {num(c['precision'], 9)}  {num(c['recall'], 6)}  {num(c['f1'], 5)}  "
              f"{c['support']:7d}")
    print(f"{'macro':<{width}}  {macro(pc['precision']):9.3f}  {macro(pc['recall']):6.3f}  "
          f"{report['macro_f1']:5.3f}  {len(y):7d}   accuracy {report['accuracy']:.3f}")
    print("(- : no val records for the class; macro averages skip it)" if (pc["support"] == 0).any() else "")
    with open(os.path.join(args.run, f"eval-{args.split}.json"), "w") as f:
        json.dump(report, f, indent=1)
    png = os.path.join(args.run, f"confusion-{args.split}.png")
    write_confusion_png(cm, labels, png, f"{args.split}: macro-F1 {report['macro_f1']:.3f}")
    print(f"wrote {os.path.join(args.run, f'eval-{args.split}.json')} and {png}")
    return report


def main() -> None:
    command(run)


if __name__ == "__main__":
    main()
