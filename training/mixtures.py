"""The train input: a class mixture whose shares change between epochs.

Which class each draw of an epoch takes is a function of (seed, epoch, that epoch's
shares) only (`epoch_choices`); each epoch's input is built when the epoch starts, with
the shares the last epoch's F1 gave. Which record a draw takes is a function of the seed
and of how many records of its class were drawn before, which the history tells: so a
run resumed at epoch e sees exactly the batches an uninterrupted run would have seen
(tests/test_training.py kills a run and checks).

TensorFlow backend with TFRecord shards: `TFRecordMixture`. One endless tf.data stream
per class, pass after pass over its records (each pass: shard files in a seeded order,
interleaved, records shuffled in blocks), read through an iterator that lives for the
whole run, so a class's records are covered pass after pass. Each epoch takes the
records its choices ask for, batch by batch, then parses (vectorised) or decodes and
resizes (in parallel) in tf.data, with prefetch. A resumed run starts each class stream
at its pass and skips to its place in it: at most one read of a class's shards, once.

Any backend with Parquet shards (JAX has no tf.data): `ParquetMixture`, a Keras
PyDataset with the same choices: each epoch reads each class from row groups in a
seeded order (so the whole class is covered over epochs), through a shuffle buffer.
Images are decoded with Pillow.

Both yield (x, one-hot y, w): x float32 vectors or float32 images in [0, 255], parsed
and decoded as training/data.py does for every split; w the sample weight of the record's
class in its epoch.
"""

from __future__ import annotations

import keras
import numpy as np
import pyarrow.parquet as pq

from training.data import table_inputs, tf_parse

SHUFFLE_BUFFER = 2048


# ---------------------------------------------------------------- the draws

def epoch_choices(seed: int, epoch: int, shares, draws: int) -> np.ndarray:
    """The class of each of an epoch's `draws` draws, in order."""
    p = np.asarray(shares, np.float64)
    return np.random.default_rng([seed, epoch]).choice(len(p), size=draws, p=p / p.sum())


def drawn_order(chosen: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """For a batch's chosen classes: records per class, and the permutation that puts rows
    taken class by class (class 0's first) in the order drawn."""
    order = np.empty(len(chosen), np.int64)
    order[np.argsort(chosen, kind="stable")] = np.arange(len(chosen))
    return np.bincount(chosen, minlength=classes), order


def drawn_before(seed: int, shares_by_epoch: list, draws: int, classes: int) -> np.ndarray:
    """Records of each class drawn in the epochs whose shares are given (a resume's start)."""
    drawn = np.zeros(classes, np.int64)
    for epoch, shares in enumerate(shares_by_epoch):
        drawn += np.bincount(epoch_choices(seed, epoch, shares, draws), minlength=classes)
    return drawn


def _class_seed(seed: int, c: int) -> int:
    return int(np.random.SeedSequence([seed, c]).generate_state(1)[0])


# ---------------------------------------------------------------- tf.data

def _tf_class_stream(files: list[str], records: int, seed: int, start: int):
    """Class records, pass after pass, from the `start`-th record drawn on (0: the beginning)."""
    import tensorflow as tf

    first_pass, skip = divmod(start, records)
    paths = tf.constant(files)

    def one_pass(q):  # stateless shuffles: their seeds may be tensors (the pass number)
        shuffle = tf.random.experimental.stateless_shuffle
        order = shuffle(paths, seed=tf.stack([tf.constant(seed, tf.int64), q]))
        d = tf.data.Dataset.from_tensor_slices(order).interleave(
            lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"), cycle_length=min(len(files), 4),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        blocks = d.batch(SHUFFLE_BUFFER).enumerate()  # records shuffled within blocks
        return blocks.map(lambda i, b: shuffle(b, seed=tf.stack([seed + 1 + q, i]))).unbatch()

    return tf.data.Dataset.range(first_pass, 1 << 62).flat_map(one_pass).skip(skip)


class TFRecordMixture:
    """Per-class record streams that live for the whole run; `epoch` builds one epoch's input."""

    CHUNK = 256  # records fetched from a class stream at a time

    def __init__(self, ds, inputs: str, batch_size: int, steps: int, seed: int, image_size: int, drawn=None):
        """`drawn`: records of each class drawn before the first epoch of this run (`drawn_before`)."""
        self.ds, self.inputs, self.batch_size, self.steps = ds, inputs, batch_size, steps
        self.seed, self.image_size = seed, image_size
        drawn = np.zeros(ds.classes, np.int64) if drawn is None else drawn
        self.streams = []
        for c in range(ds.classes):
            shards = ds.train[c]["tfrecord"]
            stream = _tf_class_stream(ds.paths(shards), sum(s["records"] for s in shards),
                                      _class_seed(seed, c), int(drawn[c]))
            self.streams.append(iter(stream.batch(self.CHUNK).prefetch(1)))
        self.buffers = [np.zeros(0, object) for _ in range(ds.classes)]

    def take(self, c: int, k: int) -> np.ndarray:
        """The next k serialized records of class c."""
        while len(self.buffers[c]) < k:
            self.buffers[c] = np.concatenate([self.buffers[c], next(self.streams[c]).numpy().astype(object)])
        out, self.buffers[c] = self.buffers[c][:k], self.buffers[c][k:]
        return out

    def epoch(self, epoch: int, shares, weights):
        """Epoch `epoch`'s `steps` batches of (x, y, w) as a tf.data.Dataset."""
        import tensorflow as tf

        b = self.batch_size
        choices = epoch_choices(self.seed, epoch, shares, self.steps * b)
        weights = np.asarray(weights, np.float32)

        def batches():  # records in the order drawn
            for i in range(self.steps):
                chosen = choices[i * b:(i + 1) * b]
                counts, order = drawn_order(chosen, self.ds.classes)
                records = np.concatenate([self.take(c, int(k)) for c, k in enumerate(counts) if k])
                yield records[order], weights[chosen]

        spec = (tf.TensorSpec([b], tf.string), tf.TensorSpec([b], tf.float32))
        d = tf.data.Dataset.from_generator(batches, output_signature=spec)
        parse, batched = tf_parse(self.ds, self.inputs, self.image_size)
        auto = tf.data.AUTOTUNE
        if batched:
            d = d.map(lambda s, w: (*parse(s), w), num_parallel_calls=auto)
        else:
            d = d.unbatch().map(lambda s, w: (*parse(s), w), num_parallel_calls=auto).batch(b)
        return d.prefetch(auto)


# ---------------------------------------------------------------- Parquet / PyDataset

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
    """Epoch `epoch`: `steps` batches drawn by `epoch_choices`, from class readers that
    start afresh each epoch at row groups in a seeded order."""

    def __init__(self, ds, inputs: str, shares, weights, batch_size: int, steps: int, seed: int,
                 image_size: int, epoch: int):
        super().__init__(workers=1, use_multiprocessing=False)  # the readers are sequential streams
        self.ds, self.inputs, self.batch_size, self.steps, self.image_size = ds, inputs, batch_size, steps, image_size
        self.choices = epoch_choices(seed, epoch, shares, steps * batch_size)
        self.weights = np.asarray(weights, np.float32)
        self.column = ds.vector_column() if inputs == "vector" else None
        columns = ["label", self.column] if inputs == "vector" else ["label", "image"]
        self.readers = [ClassReader(ds.paths(ds.train[c]["parquet"]), columns, [seed, epoch, c])
                        for c in range(ds.classes)]
        self.last = (None, None)  # (i, batch): a repeated request (Keras peeks at batch 0) gets the same

    def __len__(self):
        return self.steps

    def __getitem__(self, i):
        import pyarrow as pa

        if i == self.last[0]:
            return self.last[1]
        counts, order = drawn_order(self.choices[i * self.batch_size:(i + 1) * self.batch_size], self.ds.classes)
        t = pa.concat_tables([self.readers[c].take(int(k)) for c, k in enumerate(counts) if k]).take(order)
        labels = t.column("label").to_numpy()
        y = np.eye(self.ds.classes, dtype=np.float32)[labels]
        batch = table_inputs(t, self.inputs, self.column, self.image_size), y, self.weights[labels]
        self.last = (i, batch)
        return batch
