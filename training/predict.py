"""Predict classes for new files with a trained run's model.

    python -m training.predict --run RUN --input PATH --output preds.parquet
        [--input_format parquet|tfrecord|csv|images] [--label_column label]
        [--feature_column features | --feature_columns a,b,c] [--image_column COL] [--top_k 3]

Reads PATH with the job's readers (training/inputs.py) and checks every record as the job
does (transforms.records.validate / validate_images); images are decoded and resized as
training decodes them (training/data.py). Batch by batch, in bounded memory, with a
progress line every --progress_seconds. Writes OUT.parquet: id, source, row, label (the
input's, null without one), predicted, probability, top_labels, top_probabilities.
Rejected records go to OUT.rejected.jsonl (source, row, id, label, reason) and are
summed up at the end. With labels, prints the per-class report (classes matched by name;
labels the model never saw are reported, not scored).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from training import command, inputs, remote, run_state
from training import model as models
from training.data import model_pixels
from training.metrics import SHOWN_CLASSES, Tally, format_report
from transforms import images, records, remote_files, sources, storage
from transforms.flag_parser import FlagParser
from transforms.sources import INPUT_FORMATS

OUTPUT_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("row", pa.int64()),
                           ("label", pa.string()), ("predicted", pa.string()), ("probability", pa.float32()),
                           ("top_labels", pa.list_(pa.string())), ("top_probabilities", pa.list_(pa.float32()))])


def parser() -> argparse.ArgumentParser:
    ap = FlagParser(prog="python -m training.predict", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="Run folder of training.fit (holds model.keras).")
    ap.add_argument("--input", required=True, help="Glob or folder of new files (image folder: class "
                                                   "sub-folders are labels, files directly in it are not), or "
                                                   "a pipelines.balance output (with --split) or one of its "
                                                   "split folders, whose columns its manifest names.")
    ap.add_argument("--split", default=None, choices=("val", "test", "train"),
                    help="With --input OUT (a pipelines.balance output): the split to predict.")
    ap.add_argument("--input_format", default=None, choices=INPUT_FORMATS,
                    help="Default: from the file names; images when the model takes images.")
    ap.add_argument("--output", required=True, help="Predictions, Parquet (e.g. preds.parquet).")
    ap.add_argument("--label_column", default=None,
                    help="Labels, when the input has them (default: label; label_text in a balance output).")
    ap.add_argument("--id_column", default="id", help="Ids, used when present; else a hash of the content.")
    ap.add_argument("--feature_column", default=None, help="One column of float vectors (default: features).")
    ap.add_argument("--feature_columns", default=None, help="Comma-separated numeric columns forming the vector.")
    ap.add_argument("--image_column", default=None, help="Encoded images inside Parquet or TFRecord.")
    ap.add_argument("--top_k", type=int, default=3, help="Labels and probabilities kept per record (default 3).")
    ap.add_argument("--batch_size", type=int, default=1024, help="Records read and predicted at a time.")
    ap.add_argument("--progress_seconds", type=float, default=15.0, help="Seconds between progress lines.")
    remote.add_cache_dir(ap)
    return ap


SPLIT_FOLDER = re.compile(r"^(?P<root>.*)/(?P<fmt>parquet|tfrecord)/(?P<split>val|test|train)(/class=[^/]+)?/?$")


def from_balance_output(args, kind: str) -> None:
    """--input a pipelines.balance output (OUT with --split, or OUT/FORMAT/SPLIT[/class=...]):
    the input folder and the columns (label_text; the vector the model takes, or the image)
    from its manifest, for the flags not given. Other inputs are left as they are."""
    path = args.input.rstrip("/")
    hit = SPLIT_FOLDER.match(path)
    root = hit["root"] if hit else path
    if not storage.exists(storage.join(root, "manifest.json")):
        if args.split:
            raise ValueError(f"--split {args.split}: {args.input!r} is not a pipelines.balance output "
                             "(no manifest.json); pass files or a folder of them without --split.")
        return
    if hit and args.split and args.split != hit["split"]:
        raise ValueError(f"--split {args.split} and --input {args.input!r} (a {hit['split']} folder) disagree: "
                         "give the output folder with --split, or the split folder alone.")
    manifest = json.loads(storage.read_bytes(storage.join(root, "manifest.json")))
    if not hit:
        if not args.split:
            raise ValueError(f"--input {args.input!r} is a pipelines.balance output: name the split to predict "
                             "with --split val, test or train (or give one of its split folders).")
        fmt = "parquet" if "parquet" in manifest.get("formats", []) else "tfrecord"
        args.input = storage.join(root, fmt, args.split)
    payload = manifest.get("payload", {})
    args.label_column = args.label_column or "label_text"
    if kind == "vector" and not (args.feature_column or args.feature_columns):
        args.feature_column = "features" if payload.get("kind") == "features" else "embedding"
    if kind == "image" and not args.image_column and payload.get("kind") == "image":
        args.image_column = "image"


def read_batches(args, kind: str):
    """Raw batches of --input (reader failures as rejected batches), and how many files."""
    if kind == "image" and not args.image_column:
        if args.input_format not in (None, "images"):
            raise ValueError(f"the model takes images: --input_format {args.input_format} needs --image_column.")
        files = inputs.image_files(args.input)
        return inputs.image_batches(files), len(files)
    if kind == "vector" and (args.input_format == "images" or args.image_column):
        raise ValueError("the model takes vectors (it was trained on features or embeddings), not images.")
    cols = tuple(c.strip() for c in args.feature_columns.split(",") if c.strip()) if args.feature_columns else ()
    paths, fmt = inputs.vector_files(args.input, args.input_format)
    spec = sources.ReadSpec(input=args.input, input_format=fmt, label_column=args.label_column or "label",
                            id_column=args.id_column, feature_columns=cols, image_column=args.image_column,
                            feature_column=None if cols or args.image_column or (fmt == "csv" and not args.feature_column)
                            else args.feature_column or "features",
                            batch_size=args.batch_size, image_batch_size=args.batch_size)

    def batches():
        for path in paths:
            try:
                yield from inputs.vector_batches(path, spec)
            except sources.UnreadableFile as e:
                yield records.rejected_file(path, f"unreadable file: {e}")

    return batches(), len(paths)


_THREADS: list[ThreadPoolExecutor] = []


def _decode_threads() -> ThreadPoolExecutor:
    """Threads that decode batches of large images (Pillow releases the GIL), made on first use."""
    if not _THREADS:
        _THREADS.append(ThreadPoolExecutor(min(4, os.cpu_count() or 1), thread_name_prefix="decode"))
    return _THREADS[0]


def checked(raw: dict, kind: str, size: int) -> tuple[dict | None, np.ndarray, dict | None]:
    """(good rows, their positions in `raw`, rejected rows), checked as the job checks them.

    Good image rows carry the model's input (decoded and resized as in training) in `features`.
    """
    if "reason" in raw:  # a whole unreadable file
        return None, np.zeros(0, np.int64), raw
    if kind == "image":
        def vectorize(blobs):
            return images.batch_vectors(blobs, images.DEFAULT_MAX_PIXELS, size * size * 3,
                                        lambda img: model_pixels(img, size).ravel(), threads=_decode_threads())

        good, bad = records.validate_images(raw, vectorize(raw["image"]))
        key, bad_key = raw["source"], None if bad is None else bad["source"]  # one image a file
    else:
        good, bad = records.validate(raw, size)
        key, bad_key = raw["row"], None if bad is None else bad["row"]
    keep = np.arange(len(raw["row"])) if bad_key is None else np.flatnonzero(~np.isin(key, bad_key))
    return good, keep, bad


def predictions(model, x: np.ndarray, labels: list[str], top_k: int, batch_size: int) -> dict:
    """Predicted label, its probability, and the top-k labels and probabilities of each row."""
    probs = np.concatenate([np.asarray(model.predict_on_batch(x[i:i + batch_size]), np.float32)
                            for i in range(0, len(x), batch_size)])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    names = np.asarray(labels, object)
    return {"pred": top[:, 0], "predicted": names[top[:, 0]], "probability": probs[np.arange(len(x)), top[:, 0]],
            "top_labels": names[top].tolist(), "top_probabilities": np.take_along_axis(probs, top, 1).tolist()}


def run(argv: list[str] | None = None) -> dict:
    """Predicts --input into --output; returns the summary (records, rejected, reasons, report)."""
    args = parser().parse_args(argv)
    if args.top_k < 1 or args.batch_size < 1:
        raise ValueError(f"--top_k and --batch_size must be at least 1. Received: {args.top_k}, {args.batch_size}")
    if any(storage.is_remote(p) for p in (args.run, args.input, args.output)):
        remote_files.configure()  # Beam's file systems, which read the input, with the environment's settings
    folder = remote.RunFolder(args.run, args.cache_dir).pull([run_state.MODEL])
    model, labels = models.load(folder.path(run_state.MODEL))
    kind, size = models.input_kind(model)
    top_k = min(args.top_k, len(labels))
    from_balance_output(args, kind)
    stream, files = read_batches(args, kind)
    output = remote.local_output(args.output, args.cache_dir)  # an object-store --output: uploaded at the end
    rejected_path = os.path.splitext(output)[0] + ".rejected.jsonl"
    tmp = output + ".tmp"
    tally, reasons = Tally(labels), collections.Counter()
    done = rejected = labelled = 0
    started = last = time.time()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with pq.ParquetWriter(tmp, OUTPUT_SCHEMA) as out, open(rejected_path, "wb") as bad_file:
        for raw in stream:
            good, keep, bad = checked(raw, kind, size)
            if bad is not None:
                rejected += len(bad["reason"])
                reasons.update(bad["reason"].tolist())
                bad_file.write(records.jsonl_bytes(records.rejected_table(bad)))
            if good is not None:
                x = good["features"] if kind == "vector" else good["features"].reshape(-1, size, size, 3)
                p = predictions(model, x, labels, top_k, args.batch_size)
                given = np.where(good["label"] == inputs.UNLABELED, None, good["label"])
                source = raw["source"][keep] if isinstance(raw["source"], np.ndarray) else [raw["source"]] * len(keep)
                out.write_table(pa.table({"id": good["id"], "source": source, "row": raw["row"][keep],
                                          "label": given, "predicted": p["predicted"],
                                          "probability": p["probability"], "top_labels": p["top_labels"],
                                          "top_probabilities": p["top_probabilities"]}, schema=OUTPUT_SCHEMA))
                has = given != None  # noqa: E711 - object array
                tally.add(given[has], p["pred"][has])
                labelled += int(has.sum())
                done += len(keep)
            if time.time() - last >= args.progress_seconds:
                last = time.time()
                print(f"predict: {done:,} records predicted, {rejected:,} rejected "
                      f"({last - started:.0f} s, {files} files)", flush=True)
    os.replace(tmp, output)
    if output != args.output:
        rejected_path = _upload(rejected_path, os.path.splitext(args.output)[0] + ".rejected.jsonl")
        _upload(output, args.output)
    summary = {"records": done, "rejected": rejected, "reasons": dict(reasons.most_common()),
               "report": tally.report() if labelled else None}
    print(f"predicted {done:,} records from {files} files into {args.output} ({time.time() - started:.1f} s)")
    if rejected:
        print(f"rejected {rejected:,} records, listed in {rejected_path}:")
        for reason, n in reasons.most_common(5):
            print(f"  {n:7d}  {reason}")
    if labelled:
        print(f"\n{labelled:,} records had labels:\n{format_report(summary['report'], SHOWN_CLASSES)}")
    return summary


def _upload(local: str, url: str) -> str:
    storage.upload(local, url)
    os.remove(local)
    return url


def main() -> None:
    command(run)


if __name__ == "__main__":
    main()
