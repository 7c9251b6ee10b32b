"""The classifier, built and stored: a trainable final layer on frozen InceptionV3 features, or on vectors.

Images: augmentation (active only in training) -> scaling to [-1, 1] -> InceptionV3
without its top, average-pooled, frozen and called with training=False (its batch
statistics never move) -> Dense(classes, softmax, float32). Vectors (feature corpora,
or cached InceptionV3 embeddings): standardisation fitted on a train sample ->
the same Dense layer. Only the Dense layer's kernel and bias train.

Stored: `save_with_labels` writes a .keras archive with the class names inside
(labels.json), `load` reads one back in Keras' safe mode with its labels, and
`input_kind` says what it takes (vectors of a length, or images of a side).

The head is a softmax regression, so it is built as one: kernel and bias start at zero
(a Glorot-random kernel on a feature that is constant in train never gets a gradient
and keeps its random weights, which then fire on any test row where that feature is not
constant), with an L2 penalty on the kernel in LogisticRegression's units (`l2` = 1/C:
the loss gets l2 / (2 n) * ||W||^2 for n train records). Standardisation centres the
features and divides them all by one common scale (`standardize="global"`: pixels,
embeddings, features in one unit), or each by max(its std, the median std over
features) (`"feature"`: columns in different units). Either way a near-constant feature
(a digit's blank corner pixel) is not blown up to unit variance, as keras'
Normalization alone does (std floored at 1e-7). docs/BENCHMARKS.md has the measurements.
"""

from __future__ import annotations

import json
import os
import zipfile

import keras
import numpy as np

from transforms.inception import MIN_IMAGE_SIZE, inception_v3


def augmentation(seed: int) -> list:
    """Rotation, horizontal flip, brightness and Gaussian blur; identity at inference."""
    return [
        keras.layers.RandomFlip("horizontal", seed=seed, name="flip"),
        keras.layers.RandomRotation(0.05, seed=seed + 1, name="rotate"),
        keras.layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed + 2, name="brightness"),
        keras.layers.RandomGaussianBlur(factor=0.5, kernel_size=3, sigma=(0.1, 1.0), value_range=(0, 255),
                                        seed=seed + 3, name="blur"),
    ]


def base_network(weights: str, image_size: int):
    """The frozen base: transforms.inception's InceptionV3, with the trainer's own errors."""
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"--image_size must be at least {MIN_IMAGE_SIZE} for InceptionV3. Received: {image_size}")
    try:
        base = inception_v3(weights, image_size)
    except Exception as e:  # offline imagenet, a bad path
        if weights == "imagenet":
            raise ValueError(
                f"--weights imagenet: the ImageNet weights could not be loaded ({type(e).__name__}: "
                f"{str(e)[:200]}). Offline, pass --weights /path/to/inception_v3_notop.h5 or --weights none."
            ) from None
        raise
    base.trainable = False
    return base


STANDARDIZE = ("global", "feature")


def head(classes: int, l2: float = 0.0, train_records: int = 1) -> keras.layers.Dense:
    """The trainable final layer: zero-initialised softmax regression with an L2 penalty of
    l2 / (2 n) * ||kernel||^2 (n = train_records), i.e. LogisticRegression with C = 1 / l2."""
    if l2 < 0 or train_records < 1:
        raise ValueError(f"--l2 must be >= 0 and the train records >= 1. Received: {l2}, {train_records}")
    regularizer = keras.regularizers.L2(l2 / (2.0 * train_records)) if l2 > 0 else None
    return keras.layers.Dense(classes, activation="softmax", dtype="float32", name="head",
                              kernel_initializer="zeros", kernel_regularizer=regularizer)


def build_image_model(classes: int, image_size: int, weights: str, augment: bool, seed: int, l2: float = 0.0,
                      train_records: int = 1) -> keras.Model:
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    if augment:
        for layer in augmentation(seed):
            x = layer(x)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="to_unit_range")(x)  # preprocess_input
    base = base_network(weights, image_size)
    x = base(x, training=False)
    outputs = head(classes, l2, train_records)(x)
    return keras.Model(inputs, outputs, name="inception_v3_head")


def reseed_augmentation(model: keras.Model, epoch: int) -> None:
    """Set the augmentation layers' random streams to where epoch `epoch` starts.

    Keras saves a model without its seed generators' counters, so a resumed run would
    otherwise augment differently from an uninterrupted one; with the counter a function
    of the epoch, each epoch's augmentation depends on (seed, epoch, step) only.
    """
    for layer in model.layers:
        for state in layer.variables:  # a layer's variables include its seed generators' states
            if state.path.endswith("seed_generator_state"):
                value = keras.ops.convert_to_numpy(state)
                value[1] = epoch * EPOCH_DRAWS
                state.assign(value)


EPOCH_DRAWS = 1 << 24  # random draws of one layer within an epoch (one per step) stay below this


def standardisation(sample: np.ndarray, standardize: str = "global") -> tuple[np.ndarray, np.ndarray]:
    """(mean, variance) per feature for keras' Normalization, from a train sample.

    "feature": each feature's variance, floored at the median variance of the features
    that vary in the sample; "global": every feature gets the mean variance of those
    features (one common scale).
    """
    if standardize not in STANDARDIZE:
        raise ValueError(f"--standardize must be one of {', '.join(STANDARDIZE)}. Received: {standardize!r}")
    x = np.asarray(sample, np.float64)
    mean, var = x.mean(axis=0), x.var(axis=0)
    varying = var > 1e-12 * max(float(var.max()), 1e-30)
    if not varying.any():  # every feature constant in the sample
        return mean.astype(np.float32), np.ones_like(var, np.float32)
    if standardize == "global":
        var = np.full_like(var, var[varying].mean())
    else:
        var = np.maximum(var, np.median(var[varying]))
    return mean.astype(np.float32), var.astype(np.float32)


def build_vector_model(classes: int, dim: int, sample: np.ndarray, standardize: str = "global", l2: float = 0.0,
                       train_records: int = 1) -> keras.Model:
    inputs = keras.Input((dim,), name="vector")
    mean, var = standardisation(sample, standardize)
    x = keras.layers.Normalization(mean=mean, variance=var, name="standardise")(inputs)
    outputs = head(classes, l2, train_records)(x)
    return keras.Model(inputs, outputs, name="linear_head")


def save_with_labels(model: keras.Model, path: str, labels: list[str]) -> None:
    """model.keras with the class names inside (labels.json in the archive), atomically."""
    tmp = path + ".tmp.keras"
    model.save(tmp)
    with zipfile.ZipFile(tmp, "a") as z:
        z.writestr("labels.json", json.dumps(labels))
    os.replace(tmp, path)


def labels_in(path: str) -> list[str]:
    """The class names saved with a model (`save_with_labels`), in output order."""
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("labels.json"))


def load(path: str) -> tuple[keras.Model, list[str]]:
    """A model saved by `save_with_labels` and its class names; Keras' safe mode."""
    if not os.path.exists(path):
        raise ValueError(f"{path} does not exist: train first (python -m training.fit).")
    return keras.models.load_model(path, safe_mode=True), labels_in(path)


def input_kind(model: keras.Model) -> tuple[str, int]:
    """("vector", length) or ("image", side) of what the model takes."""
    shape = model.inputs[0].shape
    return ("vector", int(shape[1])) if len(shape) == 2 else ("image", int(shape[1]))
