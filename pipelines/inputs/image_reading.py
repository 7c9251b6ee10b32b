"""Image corpora in pipelines.balance: pass 1's reading, then the same passes as vectors.

Decoding (and an embedding model, when asked) is the expensive part of an image
corpus; pass 1 does it once per image: it reads the encoded bytes, checks and
decodes them, and computes the clustering vector (a thumbnail, or InceptionV3's pooled
features through RunInference). The valid records (bytes unchanged, vector beside
them) and the rejected ones go into the record cache (pipelines/passes/record_cache.py),
which the later passes read instead of the input.

Units of work: an image folder is listed one class folder per element, in parallel,
walked as keras.utils.image_dataset_from_directory walks it (image_folders.class_images),
and its files are read in groups; Parquet row groups and TFRecord files
are units as for vectors. With thumbnails, each unit is read, checked, decoded, cached
and summarised by record_cache.read_into_cache (`CheckedImages`), on the pass processes
where there are some; with InceptionV3 features (`EmbedImageCorpus`) the units are
decoded in the worker and RunInference embeds them.
"""

from __future__ import annotations

import logging

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from pipelines import parallel
from pipelines.inputs.reading import ReadStage, unit_batches, units_of_files
from transforms import image_folders, records, sources
from transforms.images import ImageVectors
from transforms.inception import inception_v3
from transforms.sources import ReadSpec

log = logging.getLogger("pipelines.balance")
EMBED_CHUNK = 32  # images per forward pass
# Batches of an image folder's unit at most: a unit is a task of a pass process (or a worker)
# and one cache file, which pass 4 spreads over every shard of its classes; 16 batches of
# 128 images keep 20,000 images in ~10 units, a million in ~500.
UNIT_BATCHES = 16


def _read_unit(unit, spec: ReadSpec):
    """Raw image batches of a unit: a group of image files, a Parquet row group or a TFRecord file."""
    if unit[0] != "files":
        return sources.read_unit(unit, spec)
    paths = unit[1]
    return (image_folders.read_image_files(paths[i : i + spec.image_batch_size])
            for i in range(0, len(paths), spec.image_batch_size))


class CheckedImages:
    """An image corpus's unit read, checked, decoded and vectorised, batch by batch:
    (records, valid, rejected), either None when empty (for record_cache.read_into_cache).
    Valid records carry their clustering vector (a thumbnail) or its input (the model's
    pixels, for RunInference). Each image's vector is computed alone, so the records do
    not depend on the batches."""

    def __init__(self, spec: ReadSpec, vectors: ImageVectors):
        self.spec, self.vectors = spec, vectors

    def __call__(self, unit, dim=None):
        threads = parallel.decode_threads()  # none on the job's processes
        for raw in unit_batches(unit, self.spec, _read_unit):
            yield (len(raw["row"]), *records.validate_images(raw, self.vectors.vectorize(raw["image"], threads)))


def image_units(pbegin, spec: ReadSpec):
    """An image corpus's units: groups of up to UNIT_BATCHES batches of an image folder's
    files (listed one class folder per element, in parallel, as Keras indexes them), or
    Parquet row groups and TFRecord files as for vectors."""
    if spec.input_format != "images":
        return units_of_files(pbegin, spec)
    return (
        pbegin
        | "ClassFolders" >> beam.Create(image_folders.class_folders(spec.input))
        | "SpreadFolders" >> beam.Reshuffle()
        | "List" >> beam.FlatMapTuple(image_folders.class_images)  # (label, path), as Keras indexes them
        | "Spread" >> beam.Reshuffle()
        | "Group" >> beam.BatchElements(min_batch_size=16, max_batch_size=UNIT_BATCHES * spec.image_batch_size)
        | "Unit" >> beam.Map(lambda files: ("files", sorted(files)))
    )


class _ReadImages(ReadStage):
    """Reads, checks and decodes one unit of images into model inputs (InceptionV3's, whose
    embeddings RunInference computes next)."""

    def __init__(self, checked: CheckedImages, name: str):
        super().__init__(name, checked.spec.progress_seconds, count=False)  # pass 1 never counts: the cache does
        self.checked = checked

    def process(self, unit):
        try:
            for n, good, bad in self.checked(unit):
                yield from self.emit(n, good, bad)
        except sources.UnreadableFile as e:
            yield from self.emit_unreadable(e, unit, self.checked.spec.reject_unreadable_files)


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


class EmbedImageCorpus(beam.PTransform):
    """Pass 1 for images clustered on InceptionV3 features: units -> decode, check, model
    inputs -> RunInference -> (good with embeddings, rejected, records read per batch)."""

    def __init__(self, spec: ReadSpec, vectors: ImageVectors, name: str = "read"):
        super().__init__()
        self.spec, self.vectors, self.name = spec, vectors, name

    def expand(self, pbegin):
        out = (image_units(pbegin, self.spec)
               | "Decode" >> beam.ParDo(_ReadImages(CheckedImages(self.spec, self.vectors), self.name))
               .with_outputs("rejected", "counted", main="good"))
        good = (
            out.good
            | "Embed" >> RunInference(InceptionEmbedder(self.vectors.embedding_weights,
                                                        self.vectors.embedding_image_size))
            | "WithEmbeddings" >> beam.Map(_with_embeddings)
        )
        return good, out.rejected, out.counted
