"""Image corpora in pipelines.balance: pass 1's reading, then the same passes as vectors.

Decoding (and an embedding model, when asked) is the expensive part of an image
corpus; pass 1 does it once per image: it reads the encoded bytes, checks and
decodes them, and computes the clustering vector (a thumbnail, or InceptionV3's pooled
features through RunInference). The valid records (bytes unchanged, vector beside
them) and the rejected ones go into the record cache (pipelines/record_cache.py),
which the later passes read instead of the input.

Units of work: an image folder is listed one class folder per element, in parallel,
walked as keras.utils.image_dataset_from_directory walks it (image_folders.class_images),
and its files are read in groups; Parquet row groups and TFRecord files
are units as for vectors.
"""

from __future__ import annotations

import logging

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from pipelines import image_folders, sources
from pipelines.reading import ReadStage, unit_batches, units_of_files
from pipelines.sources import ReadSpec
from transforms import cores, records
from transforms.images import ImageVectors, decode_pool
from transforms.inception import inception_v3

log = logging.getLogger("pipelines.balance")
EMBED_CHUNK = 32  # images per forward pass
# Batches of an image folder's unit at most. Decode processes work a few batches ahead
# within a unit and wait at its end, so with them long units keep them busy (16: pass 1 of
# 20,000 images ~0.5-1 s shorter than with 4, and a million images still make 500
# units); without them (Dataflow, Flink) shorter units spread the work wider.
UNIT_BATCHES, UNIT_BATCHES_ALONE = 16, 4

def _read_unit(unit, spec: ReadSpec):
    """Raw image batches of a unit: a group of image files, a Parquet row group or a TFRecord file."""
    if unit[0] != "files":
        return sources.read_unit(unit, spec)
    paths = unit[1]
    return (image_folders.read_image_files(paths[i : i + spec.image_batch_size])
            for i in range(0, len(paths), spec.image_batch_size))


class _ReadImages(ReadStage):
    """Reads, checks and decodes one unit of images; valid records carry their clustering vector's input.

    With `processes`, the batches are decoded on that many forked processes (cores.process_pool),
    a few batches ahead of the one being checked, hashed and emitted here: the per-image
    Python work of decoding holds the GIL, so threads cannot spread it over the cores.
    Each image's vector is computed alone, so the records are the same either way.
    """

    def __init__(self, spec: ReadSpec, vectors: ImageVectors, name: str, processes: int = 0):
        super().__init__(name, spec.progress_seconds, count=False)  # pass 1 never counts: the cache does
        self.spec, self.vectors, self.processes = spec, vectors, processes

    def setup(self):
        super().setup()
        self.pool = decode_pool(self.processes) if self.processes else None

    def process(self, unit):
        batches = ((raw, raw["image"]) for raw in unit_batches(unit, self.spec, _read_unit))
        try:
            for raw, decoded in cores.map_ahead(self.pool, self.vectors.vectorize, batches, self.processes + 1):
                good, bad = records.validate_images(raw, decoded)
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


class ReadImageCorpus(beam.PTransform):
    """Pass 1 for images: units -> decode, check, vector -> (good, rejected, records read per batch)."""

    def __init__(self, spec: ReadSpec, vectors: ImageVectors, name: str = "read", decode_processes: int = 0):
        super().__init__()
        self.spec, self.vectors, self.name, self.processes = spec, vectors, name, decode_processes

    def expand(self, pbegin):
        spec, vectors = self.spec, self.vectors
        if spec.input_format == "images":
            units = (
                pbegin
                | "ClassFolders" >> beam.Create(image_folders.class_folders(spec.input))
                | "SpreadFolders" >> beam.Reshuffle()
                | "List" >> beam.FlatMapTuple(image_folders.class_images)  # (label, path), as Keras indexes them
                | "Spread" >> beam.Reshuffle()
                | "Group" >> beam.BatchElements(min_batch_size=16, max_batch_size=(UNIT_BATCHES if self.processes else UNIT_BATCHES_ALONE) * spec.image_batch_size)
                | "Unit" >> beam.Map(lambda files: ("files", sorted(files)))
            )
        else:
            units = units_of_files(pbegin, spec)
        out = units | "Decode" >> beam.ParDo(_ReadImages(spec, vectors, self.name, self.processes)).with_outputs(
            "rejected", "counted", main="good")
        good = out.good
        if vectors.cluster_on == "inception_v3":
            good = (
                good
                | "Embed" >> RunInference(InceptionEmbedder(vectors.embedding_weights, vectors.embedding_image_size))
                | "WithEmbeddings" >> beam.Map(_with_embeddings)
            )
        return good, out.rejected, out.counted
