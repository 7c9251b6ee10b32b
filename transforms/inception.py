"""InceptionV3 without its top, average-pooled: the one place both the job and the trainer build it.

The job embeds images with it (--cluster_on inception_v3, through Beam's RunInference);
the trainer puts a final layer on it. Keras is imported when the model is built, so the
rest of transforms/ stays plain numpy.
"""

from __future__ import annotations

MIN_IMAGE_SIZE = 75  # InceptionV3's minimum input side


def weights_argument(weights: str) -> str | None:
    """imagenet, a weights file, or none (random weights) -> Keras's `weights` argument."""
    return None if weights in ("none", "None", "") else weights


def inception_v3(weights: str, size: int):
    """The base network: InceptionV3, include_top=False, pooling="avg", input size x size x 3."""
    import keras

    if size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE} for InceptionV3. Received: {size}")
    return keras.applications.InceptionV3(include_top=False, pooling="avg", weights=weights_argument(weights),
                                          input_shape=(size, size, 3))
