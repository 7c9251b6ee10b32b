"""Input streams for training: a class mixture whose shares change between epochs.

Each epoch's stream is a function of (seed, epoch, shares) alone: it is built afresh at
the start of the epoch, with seeds from `epoch_seed`, and the shares fixed for the epoch.
So a run resumed at epoch e sees exactly the batches an uninterrupted run would have
seen (tests/test_training.py kills a run and checks), and nothing read ahead by a
prefetch can mix two epochs' shares.

TensorFlow backend with TFRecord shards: tf.data. One stream per class (its shard
files shuffled and interleaved, records shuffled, repeated), mixed by
`sample_from_datasets` with the epoch's shares; then batch, parse (vectorised) or
decode and resize (in parallel), take the epoch's steps, prefetch.

Any backend with Parquet shards (JAX has no tf.data): `ParquetMixture`, a Keras
PyDataset with the same sampling: each batch draws its class counts from the shares
(seeded by the epoch's seed and the step), rows come from per-class streaming readers
with a shuffle buffer. Images are decoded with Pillow.

Both yield (x, one-hot y); x is float32 vectors or float32 images in [0, 255].
"""

from __future__ import annotations

import io

import keras
import numpy as np
import pyarrow.parquet as pq

SHUFFLE_BUFFER = 2048


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

def _tf_parse(ds, inputs: str, image_size: int):
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


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's draws, from the run's seed and the epoch (0-based)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def tf_train_stream(ds, inputs: str, shares, batch_size: int, steps: int, seed: int, image_size: int,
                    weights=None):
    """One epoch of the class mixture as a tf.data.Dataset of `steps` batches.

    `shares` are the epoch's class shares; with `weights` (per-class sample weights)
    batches are (x, y, w).
    """
    import tensorflow as tf

    auto = tf.data.AUTOTUNE
    streams = []
    for c in range(ds.classes):
        files = ds.paths(ds.train[c]["tfrecord"])
        s = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=seed + 7 * c)
        s = s.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
                         cycle_length=min(len(files), 4), num_parallel_calls=auto, deterministic=True)
        streams.append(s.shuffle(SHUFFLE_BUFFER, seed=seed + 7 * c + 1).repeat())
    mix = tf.data.Dataset.sample_from_datasets(streams, weights=[float(x) for x in shares], seed=seed)
    parse, batched = _tf_parse(ds, inputs, image_size)
    if batched:
        mix = mix.batch(batch_size, drop_remainder=True).map(parse, num_parallel_calls=auto)
    else:
        mix = mix.map(parse, num_parallel_calls=auto, deterministic=True).batch(batch_size, drop_remainder=True)
    mix = mix.take(steps)
    if weights is not None:
        w = tf.constant(np.asarray(weights, np.float32))
        mix = mix.map(lambda x, y: (x, y, tf.gather(w, tf.argmax(y, axis=1))))
    return mix.prefetch(auto)


def tf_val_stream(ds, inputs: str, batch_size: int, image_size: int, shards=None):
    import tensorflow as tf

    files = ds.paths(shards if shards is not None else ds.val["tfrecord"])
    d = tf.data.TFRecordDataset(files, compression_type="GZIP")
    parse, batched = _tf_parse(ds, inputs, image_size)
    if batched:
        return d.batch(batch_size).map(parse).prefetch(tf.data.AUTOTUNE)
    return d.map(parse, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------- Parquet / PyDataset

def decode_images(blobs, image_size: int) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(blobs), image_size, image_size, 3), np.float32)
    for i, b in enumerate(blobs):
        img = Image.open(io.BytesIO(b))
        img.seek(0)
        img = img.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
        out[i] = np.asarray(img, np.float32)
    return out


def table_inputs(table, inputs: str, column: str | None, image_size: int) -> np.ndarray:
    if inputs == "vector":
        col = table.column(column).combine_chunks()
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size).astype(np.float32)
    return decode_images(table.column("image").to_pylist(), image_size)


class ClassReader:
    """An endless, shuffled stream of one class's rows from its Parquet shards."""

    def __init__(self, paths: list[str], columns: list[str], seed):
        self.units = [(p, rg) for p in paths for rg in range(pq.ParquetFile(p).metadata.num_row_groups)]
        self.columns, self.rng = columns, np.random.default_rng(seed)
        self.order, self.pos, self.buffer = [], 0, None

    def _refill(self):
        import pyarrow as pa

        tables = [] if self.buffer is None else [self.buffer]
        have = 0 if self.buffer is None else self.buffer.num_rows
        while have < SHUFFLE_BUFFER:
            if self.pos >= len(self.order):
                self.order, self.pos = self.rng.permutation(len(self.units)).tolist(), 0
            path, rg = self.units[self.order[self.pos]]
            self.pos += 1
            t = pq.ParquetFile(path).read_row_group(rg, columns=self.columns)
            tables.append(t)
            have += t.num_rows
        t = pa.concat_tables(tables)
        self.buffer = t.take(self.rng.permutation(t.num_rows))

    def take(self, k: int):
        if k == 0:
            return None
        if self.buffer is None or self.buffer.num_rows < k:
            self._refill()
        out, self.buffer = self.buffer.slice(0, k), self.buffer.slice(k)
        return out


class ParquetMixture(keras.utils.PyDataset):
    """One epoch of `steps` batches whose class counts follow `shares`.

    With `weights` (per-class sample weights) batches are (x, y, w).
    """

    def __init__(self, ds, inputs: str, shares, batch_size: int, steps: int, seed: int, image_size: int,
                 weights=None):
        super().__init__(workers=1, use_multiprocessing=False)  # the readers are sequential streams
        self.ds, self.inputs, self.batch_size, self.steps = ds, inputs, batch_size, steps
        self.seed, self.image_size = seed, image_size
        self.shares = np.asarray(shares, np.float64)
        self.weights = None if weights is None else np.asarray(weights, np.float32)
        self.column = ds.vector_column() if inputs == "vector" else None
        cols = ["label", self.column] if inputs == "vector" else ["label", "image"]
        self.readers = [ClassReader(ds.paths(ds.train[c]["parquet"]), cols, [seed, c]) for c in range(ds.classes)]

    def __len__(self):
        return self.steps

    def __getitem__(self, i):
        import pyarrow as pa

        rng = np.random.default_rng([self.seed, i])
        counts = rng.multinomial(self.batch_size, self.shares / self.shares.sum())
        tables = [t for c, k in enumerate(counts) if (t := self.readers[c].take(int(k))) is not None]
        t = pa.concat_tables(tables)
        t = t.take(rng.permutation(t.num_rows))
        labels = t.column("label").to_numpy()
        y = np.eye(self.ds.classes, dtype=np.float32)[labels]
        x = table_inputs(t, self.inputs, self.column, self.image_size)
        if self.weights is None:
            return x, y
        return x, y, self.weights[labels]


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


def labels_of(batches) -> np.ndarray:
    """All labels of a val stream (tf.data or PyDataset), as indices."""
    out = []
    if hasattr(batches, "__getitem__") and hasattr(batches, "__len__"):
        for i in range(len(batches)):
            out.append(np.argmax(batches[i][1], axis=1))
    else:
        for _, y in batches:
            out.append(np.argmax(np.asarray(y), axis=1))
    return np.concatenate(out) if out else np.zeros(0, np.int64)
