"""Image corpora in pipelines.balance: decode once, cache, then the same passes as vectors.

Decoding (and an embedding model, when asked) is the expensive part of an image
corpus, so pass 1 does it once per image: it reads the encoded bytes, checks and
decodes them, computes the clustering vector (a thumbnail, or InceptionV3's pooled
features through RunInference), and writes the valid records (bytes unchanged,
vector beside them) and the rejected ones to OUT/.staging/RUN/cache/. The later passes
read that cache instead of the input. Memory stays bounded: the cache is on disk,
written per bundle in chunks.

Units of work: an image folder is listed one class folder per element, in parallel,
walked as keras.utils.image_dataset_from_directory walks it (image_folders.class_images),
and its files are read in groups; Parquet row groups and TFRecord files
are units as for vectors.
"""

from __future__ import annotations

import logging
import uuid

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from pipelines import image_folders, shards, sources
from pipelines.reading import ReadStage, unit_batches, units_of_files, windowed
from pipelines.sources import ReadSpec
from transforms import records
from transforms.images import ImageVectors
from transforms.inception import inception_v3

log = logging.getLogger("pipelines.balance")
EMBED_CHUNK = 32  # images per forward pass

CACHE_SCHEMA_FIELDS = [("id", pa.string()), ("key", pa.uint64()), ("label", pa.string()),
                       ("image", pa.binary()), ("format", pa.string())]


def _read_unit(unit, spec: ReadSpec):
    """Raw image batches of a unit: a group of image files, a Parquet row group or a TFRecord file."""
    if unit[0] != "files":
        return sources.read_unit(unit, spec)
    paths = unit[1]
    return (image_folders.read_image_files(paths[i : i + spec.image_batch_size])
            for i in range(0, len(paths), spec.image_batch_size))


class _ReadImages(ReadStage):
    """Reads, checks and decodes one unit of images; valid records carry their clustering vector's input."""

    def __init__(self, spec: ReadSpec, vectors: ImageVectors, name: str):
        super().__init__(name, spec.progress_seconds, count=False)  # pass 1 never counts: the cache does
        self.spec, self.vectors = spec, vectors

    def process(self, unit):
        try:
            for raw in unit_batches(unit, self.spec, _read_unit):
                good, bad = records.validate_images(raw, self.vectors.vectorize)
                yield from self.emit(len(raw["row"]), good, bad)
        except sources.UnreadableFile as e:
            yield from self.emit_unreadable(e, unit, self.spec.reject_unreadable_files)


class InceptionEmbedder(ModelHandler):
    """RunInference handler: batches of records -> the same batches with embeddings.

    The model is built (and its weights loaded) once per worker by RunInference; each
    element is already a batch of images, so RunInference is told not to batch further.
    """

    def __init__(self, weights: str, size: int):
        super().__init__()
        self.weights, self.size = weights, size

    def load_model(self):
        return inception_v3(self.weights, self.size)

    def run_inference(self, batch, model, inference_args=None):
        results = []
        for good in batch:
            x = good["features"].reshape(-1, self.size, self.size, 3)
            emb = [np.asarray(model.predict_on_batch(x[i : i + EMBED_CHUNK]), np.float32)
                   for i in range(0, len(x), EMBED_CHUNK)]
            results.append(PredictionResult(good, np.concatenate(emb)))
        return results

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": 1}

    def share_model_across_processes(self) -> bool:
        return False


def check_embedding_weights(weights: str) -> None:
    """Fails before the job when `imagenet` weights cannot be had (e.g. offline)."""
    if weights != "imagenet":
        if weights not in ("none", "None") and not FileSystems.exists(weights):
            raise ValueError(f"--embedding_weights {weights!r}: no such file. Pass imagenet, none or a weights file.")
        return
    import keras
    from keras.src.applications import inception_v3 as iv3

    try:
        keras.utils.get_file("inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                             iv3.WEIGHTS_PATH_NO_TOP, cache_subdir="models",
                             file_hash="bcbd6486424b2319ff4ef7d526e38f63")
    except Exception as e:  # noqa: BLE001 - offline: URL fetch failure
        raise ValueError(
            "--embedding_weights imagenet: the ImageNet weights for InceptionV3 could not be fetched "
            f"({type(e).__name__}: {str(e)[:200]}). On a machine without network, pass a local file with "
            "--embedding_weights /path/to/inception_v3_notop.weights.h5 (or none for random weights)."
        ) from None


def _with_embeddings(result: PredictionResult) -> dict:
    return {**result.example, "features": result.inference}


def cache_table(good: dict) -> pa.Table:
    cols = [pa.array(good[k], t) for k, t in CACHE_SCHEMA_FIELDS]
    return pa.Table.from_arrays(cols + [shards.vector_array(good["features"])],
                                names=[k for k, _ in CACHE_SCHEMA_FIELDS] + ["features"])


def good_from_table(batch: pa.RecordBatch) -> dict:
    feats = batch.column("features")
    x = feats.flatten().to_numpy(zero_copy_only=False).reshape(len(batch), feats.type.list_size)
    out = {k: batch.column(k).to_numpy(zero_copy_only=False).astype(object) for k, _ in CACHE_SCHEMA_FIELDS
           if k != "key"}
    out["key"] = batch.column("key").to_numpy()
    out["features"] = np.ascontiguousarray(x, np.float32)
    return out


class _WriteCache(beam.DoFn):
    """Writes batches (valid or rejected) into cache files; emits (kind, path)."""

    def __init__(self, folder: str, kind: str):
        self.folder, self.kind = folder, kind

    def start_bundle(self):
        self.tables, self.bytes = [], 0

    def process(self, batch):
        table = cache_table(batch) if self.kind == "good" else shards.rejected_table(batch)
        self.tables.append(table)
        self.bytes += table.nbytes
        if self.bytes >= shards.FLUSH_BYTES:
            yield self._flush()

    def finish_bundle(self):
        if self.tables:
            yield windowed(self._flush())

    def _flush(self):
        path = f"{self.folder}/{self.kind}-{uuid.uuid4().hex}.arrow"
        table = pa.concat_tables(self.tables)
        with shards.create(path) as f, pa.ipc.new_stream(f, table.schema) as w:
            w.write_table(table)
        self.tables, self.bytes = [], 0
        return self.kind, path


class ReadImageCorpus(beam.PTransform):
    """Pass 1 for images: units -> decode, check, vector -> (good, rejected, counted, cache index)."""

    def __init__(self, spec: ReadSpec, vectors: ImageVectors, staging: str, name: str = "read"):
        super().__init__()
        self.spec, self.vectors, self.staging, self.name = spec, vectors, staging, name

    def expand(self, pbegin):
        spec, vectors = self.spec, self.vectors
        if spec.input_format == "images":
            units = (
                pbegin
                | "ClassFolders" >> beam.Create(image_folders.class_folders(spec.input))
                | "SpreadFolders" >> beam.Reshuffle()
                | "List" >> beam.FlatMapTuple(image_folders.class_images)  # (label, path), as Keras indexes them
                | "Spread" >> beam.Reshuffle()
                | "Group" >> beam.BatchElements(min_batch_size=16, max_batch_size=4 * spec.image_batch_size)
                | "Unit" >> beam.Map(lambda files: ("files", sorted(files)))
            )
        else:
            units = units_of_files(pbegin, spec)
        out = units | "Decode" >> beam.ParDo(_ReadImages(spec, vectors, self.name)).with_outputs(
            "rejected", "counted", main="good")
        good = out.good
        if vectors.cluster_on == "inception_v3":
            good = (
                good
                | "Embed" >> RunInference(InceptionEmbedder(vectors.embedding_weights, vectors.embedding_image_size))
                | "WithEmbeddings" >> beam.Map(_with_embeddings)
            )
        folder = f"{self.staging}/cache"
        index = (
            (good | "CacheValid" >> beam.ParDo(_WriteCache(folder, "good")),
             out.rejected | "CacheRejected" >> beam.ParDo(_WriteCache(folder, "rejected")))
            | "CacheIndex" >> beam.Flatten()
        )
        return good, out.rejected, out.counted, index


class _ReadCacheFile(ReadStage):
    def process(self, item):
        kind, path = item
        with shards.open_read(path) as f:
            for batch in pa.ipc.open_stream(f):
                if kind == "good":
                    yield from self.emit(batch.num_rows, good_from_table(batch), None)
                else:
                    cols = {k: batch.column(k).to_numpy(zero_copy_only=False) for k in batch.schema.names}
                    cols = {k: (v.astype(object) if k != "row" else v) for k, v in cols.items()}
                    yield from self.emit(batch.num_rows, None, cols)


class ReadCache(beam.PTransform):
    """The passes after the first, for images: the cached records -> (good, rejected)."""

    def __init__(self, progress_seconds: float, index, count: bool = False, name: str = "read"):
        super().__init__()
        self.progress_seconds, self.index, self.count, self.name = progress_seconds, index, count, name

    def expand(self, pbegin):
        out = (
            pbegin
            | "Start" >> beam.Create([None])
            | "CacheFiles" >> beam.FlatMap(lambda _, idx: sorted(idx), self.index)
            | "Spread" >> beam.Reshuffle()
            | "ReadCache" >> beam.ParDo(_ReadCacheFile(self.name, self.progress_seconds, self.count))
            .with_outputs("rejected", "counted", main="good")
        )
        return out.good, out.rejected, out.counted
