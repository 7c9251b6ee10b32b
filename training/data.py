"""Training input from the shards, in order: which reader a backend uses (`pick_reader`),
the batches of (x, one-hot y) of a split (`split_stream`: tf.data over TFRecord shards, a
Keras PyDataset over Parquet shards), and a sample of train vectors. Records are parsed
in tf.data (vectorised), or images decoded with Pillow as the job decodes them
(`decode_images`), as float32 in [0, 255]. The train input, a class mixture whose shares
change between epochs, is training/mixtures.py, which parses records the same way.
"""

from __future__ import annotations

import keras
import numpy as np
import pyarrow.parquet as pq

from transforms.images import DEFAULT_MAX_PIXELS, decode


def pick_reader(ds, backend: str) -> str:
    """tfrecord (tf.data) when TF runs and the shards exist, else parquet (PyDataset)."""
    if backend == "tensorflow" and "tfrecord" in ds.formats:
        return "tfrecord"
    if "parquet" in ds.formats:
        return "parquet"
    raise ValueError(
        f"The {backend} backend reads Parquet shards, and {ds.root} has only {ds.formats}: "
        "re-run pipelines.balance with --output_format parquet or both."
    )


# ---------------------------------------------------------------- tf.data

def tf_parse(ds, inputs: str, image_size: int):
    """(parse, batched): serialized records to (x, one-hot y); batched: it takes a batch of
    records at once (vectors), else one record (images, decoded and resized)."""
    import tensorflow as tf

    classes = ds.classes
    if inputs == "vector":
        col = ds.vector_column()
        spec = {"label": tf.io.FixedLenFeature([], tf.int64), col: tf.io.FixedLenFeature([ds.vector_dim()], tf.float32)}

        def parse(serialized):  # a batch at once
            p = tf.io.parse_example(serialized, spec)
            return p[col], tf.one_hot(p["label"], classes)

        return parse, True
    spec = {"label": tf.io.FixedLenFeature([], tf.int64), "image/encoded": tf.io.FixedLenFeature([], tf.string)}

    def parse_one(serialized):  # per record: image decode is per record by nature
        p = tf.io.parse_single_example(serialized, spec)
        img = tf.io.decode_image(p["image/encoded"], channels=3, expand_animations=False)
        img = tf.image.resize(tf.cast(img, tf.float32), [image_size, image_size])
        img.set_shape([image_size, image_size, 3])
        return img, tf.one_hot(p["label"], classes)

    return parse_one, False


def tf_val_stream(ds, inputs: str, batch_size: int, image_size: int, shards=None):
    import tensorflow as tf

    files = ds.paths(shards if shards is not None else ds.val["tfrecord"])
    d = tf.data.TFRecordDataset(files, compression_type="GZIP")
    parse, batched = tf_parse(ds, inputs, image_size)
    if batched:
        return d.batch(batch_size).map(parse).prefetch(tf.data.AUTOTUNE)
    return d.map(parse, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------- Parquet / PyDataset

def model_pixels(img, image_size: int) -> np.ndarray:
    """An RGB Pillow image as the model takes it: image_size x image_size, float32 in [0, 255]."""
    from PIL import Image

    return np.asarray(img.resize((image_size, image_size), Image.Resampling.BILINEAR), np.float32)


def decode_images(blobs, image_size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """RGB float images, decoded as the job decodes them (pixel cap read from the header first)."""
    out = np.empty((len(blobs), image_size, image_size, 3), np.float32)
    for i, b in enumerate(blobs):
        img, _, reason = decode(b, max_pixels)
        if reason:
            raise ValueError(f"an image in the shards cannot be used: {reason}; re-run pipelines.balance")
        out[i] = model_pixels(img, image_size)
    return out


def table_inputs(table, inputs: str, column: str | None, image_size: int) -> np.ndarray:
    """The x of a Parquet table's rows: float32 vectors of `column`, or decoded images."""
    if inputs == "vector":
        col = table.column(column).combine_chunks()
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size).astype(np.float32)
    return decode_images(table.column("image").to_pylist(), image_size)


class ParquetBatches(keras.utils.PyDataset):
    """The val (or any) shards in order, batch by batch."""

    def __init__(self, ds, inputs: str, batch_size: int, image_size: int, shards=None):
        super().__init__()
        self.ds, self.inputs, self.image_size = ds, inputs, image_size
        self.column = ds.vector_column() if inputs == "vector" else None
        cols = ["label", self.column] if inputs == "vector" else ["label", "image"]
        paths = ds.paths(shards if shards is not None else ds.val["parquet"])
        self.tables = [pq.read_table(p, columns=cols) for p in paths]
        import pyarrow as pa

        self.table = pa.concat_tables(self.tables) if self.tables else None
        self.batch_size = batch_size

    def __len__(self):
        return 0 if self.table is None else -(-self.table.num_rows // self.batch_size)

    def __getitem__(self, i):
        t = self.table.slice(i * self.batch_size, self.batch_size)
        y = np.eye(self.ds.classes, dtype=np.float32)[t.column("label").to_numpy()]
        return table_inputs(t, self.inputs, self.column, self.image_size), y


def split_stream(ds, reader: str, inputs: str, batch_size: int, image_size: int, shards=None):
    """Batches of (x, one-hot y) over a split's shards (default val/), in order: tf.data
    for the tfrecord reader, a PyDataset for parquet."""
    if reader == "tfrecord":
        return tf_val_stream(ds, inputs, batch_size, image_size, shards)
    return ParquetBatches(ds, inputs, batch_size, image_size, shards)


def batches(stream):
    """(x, y) numpy batches of a `split_stream` (tf.data or PyDataset)."""
    if hasattr(stream, "__getitem__") and hasattr(stream, "__len__"):
        for i in range(len(stream)):
            x, y = stream[i]
            yield np.asarray(x), np.asarray(y)
    else:
        for x, y in stream:
            yield x.numpy(), y.numpy()


def labels_of(stream) -> np.ndarray:
    """All labels of a split stream, as class indices."""
    out = [np.argmax(y, axis=1) for _, y in batches(stream)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def vector_sample(ds, per_class: int = 512) -> np.ndarray:
    """A few train rows per class (first row group of each class's first shard)."""
    col, rows = ds.vector_column(), []
    for c in range(ds.classes):
        if "parquet" in ds.formats:
            shards = [s for s in ds.train[c]["parquet"] if s["records"]]  # a shard can be empty
            if not shards:
                continue
            t = pq.ParquetFile(ds.paths(shards[:1])[0]).read_row_group(0, columns=[col])
            x = t.column(col).combine_chunks()
            rows.append(x.flatten().to_numpy().reshape(len(x), -1)[:per_class])
        else:
            import tensorflow as tf

            spec = {col: tf.io.FixedLenFeature([ds.vector_dim()], tf.float32)}
            d = tf.data.TFRecordDataset(ds.paths(ds.train[c]["tfrecord"]), compression_type="GZIP")
            for batch in d.take(per_class).batch(per_class):
                rows.append(tf.io.parse_example(batch, spec)[col].numpy())
    return np.concatenate(rows).astype(np.float32)
