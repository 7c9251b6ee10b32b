"""A trained model scored on a split of any balance output, classes matched by name.

Used by training.fit (the test split, once, after training) and training.evaluate. The
output may be another corpus than the one the model was trained on: its classes are
matched to the model's by label name, and records of a label the model never saw are
counted apart (`metrics.Tally`), never scored as errors of a class they are not.
"""

from __future__ import annotations

import warnings

import numpy as np

from training import data
from training import manifest as mf
from training.metrics import Tally
from training.model import input_kind

SPLITS = ("val", "test", "train")


def split_shards(ds: mf.Dataset, split: str, reader: str) -> list[dict]:
    """The shards of `split` in the `reader` format; an error when the split has no records."""
    if split == "train":
        return [s for c in ds.train for s in c[reader]]
    shards = {"val": ds.val, "test": ds.test}[split]
    if not mf.records_in(shards):
        how = "--holdout_fraction > 0" if split == "val" else "--test_fraction > 0"
        raise ValueError(f"{ds.root} has no {split} records: re-run pipelines.balance with {how}, "
                         "or pick another --split.")
    return shards[reader]


def model_inputs(model, ds: mf.Dataset) -> tuple[str, int]:
    """(inputs, image_size) to read `ds` with for `model`; an error when the shards lack what it takes."""
    kind, size = input_kind(model)
    if kind == "image":
        if ds.payload.get("kind") != "image":
            raise ValueError(f"the model takes images; {ds.root} holds feature vectors.")
        return "image", size
    if not ds.vector_column() or ds.vector_dim() != size:
        have = f"vectors of length {ds.vector_dim()}" if ds.vector_column() else "no vectors"
        raise ValueError(f"the model takes vectors of length {size}; {ds.root} has {have}.")
    return "vector", 0


def score(model, labels: list[str], ds: mf.Dataset, split: str, reader: str, batch_size: int) -> dict:
    """`Tally.report` of `model` (classes `labels`) on `split` of `ds`, read once, batch by batch."""
    inputs, image_size = model_inputs(model, ds)
    stream = data.split_stream(ds, reader, inputs, batch_size, image_size, split_shards(ds, split, reader))
    names = np.asarray(ds.labels, object)
    tally = Tally(labels)
    with warnings.catch_warnings():  # Keras warns when a finite dataset ends
        warnings.simplefilter("ignore", UserWarning)
        for x, y in data.batches(stream):
            probs = np.asarray(model.predict_on_batch(x))
            tally.add(names[y.argmax(axis=1)], probs.argmax(axis=1))
    return tally.report()
