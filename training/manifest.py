"""What the trainer reads: OUT/manifest.json, checked before any training starts.

The manifest is the only description of the data the trainer trusts: the class list
(position = label index), train shards per class, val shards, the payload kind. Paths
must stay inside OUT; every listed shard must exist and hold the record count the
manifest says: Parquet from its footer (cheap), and, when the trainer reads them,
TFRecord by reading their records, framing checked (`check_tfrecord_counts`: one read of
each file, in parallel).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Dataset:
    root: str
    labels: list[str]
    train: list[dict[str, list[dict]]]  # per class: format -> [{"path", "records"}]
    val: dict[str, list[dict]]
    test: dict[str, list[dict]]  # empty when balanced without --test_fraction
    payload: dict
    formats: list[str]
    train_input: list[int]  # records per class before resampling (for class-weighted losses)
    output: list[int]  # records per class in train/

    @property
    def classes(self) -> int:
        return len(self.labels)

    def paths(self, shards: list[dict]) -> list[str]:
        return [os.path.join(self.root, s["path"]) for s in shards]

    def vector_column(self) -> str | None:
        """The vector the final layer can train on directly, if the shards carry one."""
        if self.payload.get("kind") == "features":
            return "features"
        if self.payload.get("embedding"):
            return "embedding"
        return None

    def vector_dim(self) -> int:
        return int(self.payload["dim"] if self.payload["kind"] == "features" else self.payload["embedding"])


def load(root: str) -> Dataset:
    """Reads and checks OUT/manifest.json; errors name the file and what is wrong."""
    path = os.path.join(root, "manifest.json")
    if not os.path.exists(path):
        raise ValueError(
            f"{path} does not exist: {root!r} is not a complete pipelines.balance output "
            "(the manifest is written last; run the job, or let it finish)."
        )
    with open(path) as f:
        m = json.load(f)
    version = m.get("schema_version")
    if version == 1:
        raise ValueError(f"{path}: schema_version 1 (the layout with train/ and val/ directly in OUT) is "
                         "no longer read; re-run pipelines.balance into a new --output to get version "
                         f"{SCHEMA_VERSION} (OUT/parquet/..., OUT/tfrecord/...).")
    if version != SCHEMA_VERSION:
        raise ValueError(f"{path}: unknown schema_version {version!r}; this trainer reads version {SCHEMA_VERSION}.")
    classes = sorted(m["classes"], key=lambda c: c["index"])
    if [c["index"] for c in classes] != list(range(len(classes))):
        raise ValueError(f"{path}: class indices are not 0..{len(classes) - 1}")
    ds = Dataset(
        root=root,
        labels=[c["label"] for c in classes],
        train=[c["shards"] for c in classes],
        val=m["val"]["shards"],
        test=m.get("test", {}).get("shards", {}),
        payload=m["payload"],
        formats=m["formats"],
        train_input=[int(c["train_input"]) for c in classes],
        output=[int(c["output"]) for c in classes],
    )
    check_shards(ds, path)
    return ds


def check_shards(ds: Dataset, manifest_path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = os.path.realpath(ds.root)
    listed = [s for c in ds.train for shards in c.values() for s in shards]
    listed += [s for split in (ds.val, ds.test) for shards in split.values() for s in shards]
    for shard in listed:
        full = os.path.realpath(os.path.join(ds.root, shard["path"]))
        if not full.startswith(root + os.sep):
            raise ValueError(f"{manifest_path}: shard path {shard['path']!r} points outside {ds.root!r}")
        if not os.path.exists(full):
            raise ValueError(f"{full} is listed in {manifest_path} but does not exist")
        if full.endswith(".parquet"):
            try:
                n = pq.read_metadata(full).num_rows
            except (OSError, pa.ArrowException) as e:
                raise ValueError(f"{full} cannot be read ({type(e).__name__}: {e}): re-run pipelines.balance into "
                                 "a new --output") from None
            if n != shard["records"]:
                raise ValueError(f"{full} holds {n} records; {manifest_path} says {shard['records']}")


def check_tfrecord_counts(ds: Dataset) -> None:
    """TFRecord shards hold the records the manifest says (one read of each, in parallel)."""
    listed = [s for c in ds.train for s in c.get("tfrecord", [])] + ds.val.get("tfrecord", []) \
        + ds.test.get("tfrecord", [])
    paths = ds.paths(listed)
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # zlib releases the GIL
        for shard, path, n in zip(listed, paths, pool.map(count_tfrecords, paths), strict=True):
            if n != shard["records"]:
                raise ValueError(f"{path} holds {n} records; {os.path.join(ds.root, 'manifest.json')} "
                                 f"says {shard['records']}")


def count_tfrecords(path: str) -> int:
    """Records in a (gzipped) TFRecord file, every record's framing checked."""
    import gzip
    import zlib

    from transforms.example_codec import read_tfrecords

    n = 0
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            for _ in read_tfrecords(f):
                n += 1
    except (ValueError, OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path} cannot be read after {n} records ({e}): re-run pipelines.balance "
                         "into a new --output") from e
    return n


def records_in(split: dict[str, list[dict]]) -> int:
    """Records of a split's shards (val or test; the same in every format)."""
    return sum(s["records"] for s in next(iter(split.values()), []))


def val_records(ds: Dataset) -> int:
    return records_in(ds.val)
