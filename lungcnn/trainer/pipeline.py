"""tf.data pipelines: cached decoded arrays in, (augmented) raw 0-255 float batches out.

Augmentation runs here, never inside the saved model; the model's own Rescaling layer is the
only pixel scaling. Acquisition transforms act per image (before batching), geometric
ones per batch through Keras preprocessing layers.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from lungcnn.edge.contract import CLASS_NAMES
from lungcnn.trainer.config import Augmentation

_BLUR_KERNEL = 9  # taps of the gaussian blur; covers sigma up to ~2 px
_JPEG_MAX_QUALITY = 95


def training_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    augmentation: Augmentation,
    seed: int,
    weights: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Shuffled each epoch, augmented, one-hot labels, float32 pixels in 0-255; with
    `weights`, each element also carries its sample weight for the loss."""
    dataset = _tensor_dataset(images, labels, weights).shuffle(
        len(images), seed=seed, reshuffle_each_iteration=True
    )
    acquisition = _acquisition_transform(augmentation)
    if acquisition is not None:
        dataset = dataset.map(lambda x, *rest: (acquisition(x), *rest),
                              num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size)
    geometric = _geometric_layers(augmentation, seed)
    if geometric:
        dataset = dataset.map(
            lambda x, *rest: (_apply_layers(geometric, x), *rest),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """In order, unaugmented: exactly the load_scan pixels (as float32)."""
    return _tensor_dataset(images, labels).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _tensor_dataset(
    images: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> tf.data.Dataset:
    one_hot = np.eye(len(CLASS_NAMES), dtype=np.float32)[labels]
    tensors = (images, one_hot) if weights is None else (images, one_hot,
                                                          weights.astype(np.float32))
    return (
        tf.data.Dataset.from_tensor_slices(tensors)
        .cache()
        .map(lambda x, *rest: (tf.cast(x, tf.float32), *rest))
    )


def _geometric_layers(augmentation: Augmentation, seed: int) -> list[keras.layers.Layer]:
    # Default "nearest" fill, like the reference notebook's ImageDataGenerator.
    layers = []
    if augmentation.rotation_degrees:
        layers.append(
            keras.layers.RandomRotation(
                augmentation.rotation_degrees / 360, fill_mode=augmentation.fill_mode, seed=seed
            )
        )
    if augmentation.zoom:
        layers.append(
            keras.layers.RandomZoom(
                augmentation.zoom, fill_mode=augmentation.fill_mode, seed=seed + 1
            )
        )
    if augmentation.shift:
        layers.append(
            keras.layers.RandomTranslation(
                augmentation.shift,
                augmentation.shift,
                fill_mode=augmentation.fill_mode,
                seed=seed + 2,
            )
        )
    return layers


def _apply_layers(layers: list[keras.layers.Layer], batch: tf.Tensor) -> tf.Tensor:
    for layer in layers:
        batch = layer(batch, training=True)
    return tf.clip_by_value(batch, 0.0, 255.0)


def _acquisition_transform(augmentation: Augmentation):
    """A per-image function for the enabled acquisition transforms, or None."""
    steps = []
    if augmentation.downscale_probability:
        steps.append(
            _maybe(
                augmentation.downscale_probability,
                lambda x: _downscale(x, augmentation.downscale_min_factor),
            )
        )
    if augmentation.blur_probability:
        steps.append(
            _maybe(
                augmentation.blur_probability,
                lambda x: _gaussian_blur(x, augmentation.blur_max_sigma),
            )
        )
    if augmentation.jpeg_probability:
        steps.append(
            _maybe(augmentation.jpeg_probability, lambda x: _jpeg(x, augmentation.jpeg_min_quality))
        )
    if augmentation.gamma:
        steps.append(lambda x: _gamma(x, augmentation.gamma))
    if augmentation.noise:
        steps.append(lambda x: x + tf.random.normal(tf.shape(x)) * tf.random.uniform(
            [], 0.0, augmentation.noise * 255.0))
    if augmentation.brightness:
        steps.append(
            lambda x: x + tf.random.uniform([], -1.0, 1.0) * augmentation.brightness * 255.0
        )
    if augmentation.contrast:
        steps.append(
            lambda x: tf.image.random_contrast(
                x, 1.0 - augmentation.contrast, 1.0 + augmentation.contrast
            )
        )
    if not steps:
        return None

    def transform(image: tf.Tensor) -> tf.Tensor:
        for step in steps:
            image = step(image)
        return tf.clip_by_value(image, 0.0, 255.0)

    return transform


def _gamma(image: tf.Tensor, spread: float) -> tf.Tensor:
    exponent = tf.exp(tf.random.uniform([], -1.0, 1.0) * tf.math.log(1.0 + spread))
    return 255.0 * tf.pow(tf.clip_by_value(image, 0.0, 255.0) / 255.0, exponent)


def _maybe(probability: float, step):
    return lambda x: tf.cond(tf.random.uniform([]) < probability, lambda: step(x), lambda: x)


def _downscale(image: tf.Tensor, min_factor: float) -> tf.Tensor:
    size = tf.shape(image)[:2]
    factor = tf.random.uniform([], min_factor, 1.0)
    small = tf.maximum(tf.cast(tf.cast(size, tf.float32) * factor, tf.int32), 1)
    shrunk = tf.image.resize(image, small, method="area")
    return tf.image.resize(shrunk, size, method="bilinear")


def _gaussian_blur(image: tf.Tensor, max_sigma: float) -> tf.Tensor:
    sigma = tf.random.uniform([], 0.3, max_sigma)
    taps = tf.range(_BLUR_KERNEL, dtype=tf.float32) - (_BLUR_KERNEL - 1) / 2
    weights = tf.exp(-0.5 * tf.square(taps / sigma))
    weights /= tf.reduce_sum(weights)
    # Separable: a row pass then a column pass, reflect-padded so borders keep their level.
    pad = _BLUR_KERNEL // 2
    padded = tf.pad(image[None], [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    rows = tf.nn.conv2d(padded, tf.reshape(weights, [1, _BLUR_KERNEL, 1, 1]), 1, "VALID")
    return tf.nn.conv2d(rows, tf.reshape(weights, [_BLUR_KERNEL, 1, 1, 1]), 1, "VALID")[0]


def _jpeg(image: tf.Tensor, min_quality: int) -> tf.Tensor:
    quality = tf.random.uniform([], min_quality, _JPEG_MAX_QUALITY + 1, dtype=tf.int32)
    encoded = tf.image.adjust_jpeg_quality(tf.cast(tf.round(image), tf.uint8), quality)
    return tf.cast(encoded, tf.float32)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return math.ceil(n_train / batch_size)
