"""The lung-field segmenter: a tiny U-Net trained on the lung masks, saved in a run directory
like the classifier (`model.keras`, `manifest.json` with the resolved config, `metrics.json`).

`lungcnn segmenter` (lungcnn/segmenter_cli.py) trains it, converts it to int8 and scores it
across sites. Keras is imported inside the functions, so `lungcnn --help` does not load it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lungcnn.edge.manifest import write_json_atomic
from lungcnn.trainer.segmenter_data import MaskPair, augmented


@dataclass(frozen=True)
class SegmenterConfig:
    """The segmenter's recipe; saved resolved in its run manifest."""

    input_size: int = 96
    widths: tuple[int, ...] = (8, 16, 32)  # encoder stages; the bottleneck is 1.5x the last
    epochs: int = 40
    batch_size: int = 16
    learning_rate: float = 0.003
    held_out_fraction: float = 0.2
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def build_unet(config: SegmenterConfig):
    """U-Net: per stage two 3x3 convolutions (batch norm, ReLU), max-pool down, nearest
    up-sampling and a skip connection up, a sigmoid lung probability per pixel."""
    import keras
    from keras import layers

    def block(x, filters: int):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
        return x

    inputs = keras.Input((config.input_size, config.input_size, 1))
    x = layers.Rescaling(1 / 255)(inputs)
    skips = []
    for width in config.widths:
        x = block(x, width)
        skips.append(x)
        x = layers.MaxPooling2D(2)(x)
    x = block(x, config.widths[-1] * 3 // 2)
    for width, skip in zip(reversed(config.widths), reversed(skips)):
        x = layers.Concatenate()([layers.UpSampling2D(2)(x), skip])
        x = block(x, width)
    outputs = layers.Conv2D(1, 1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="lung_unet")


def dice_scores(probabilities: np.ndarray, masks: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per-image Dice of the thresholded prediction against the mask."""
    predicted = probabilities.reshape(len(masks), -1) >= threshold
    truth = masks.reshape(len(masks), -1) > 0.5
    overlap = (predicted & truth).sum(axis=1)
    total = predicted.sum(axis=1) + truth.sum(axis=1)
    return np.where(total > 0, 2 * overlap / np.maximum(total, 1), 1.0)


def train_segmenter(pairs: list[MaskPair], config: SegmenterConfig, out: Path,
                    log: Callable[[str], None] = print):
    """Train on `pairs` and save the run directory; returns the Keras model."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = build_unet(config)
    steps = config.epochs * -(-len(pairs) // config.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps)
    model.compile(keras.optimizers.Adam(schedule), loss=_bce_dice_loss(tf))
    started = time.perf_counter()
    for epoch in range(config.epochs):
        images, masks = zip(*(augmented(pair, rng) for pair in pairs))
        history = model.fit(np.stack(images)[..., None], np.stack(masks)[..., None],
                            batch_size=config.batch_size, epochs=1, shuffle=True, verbose=0)
        log(f"epoch {epoch + 1}/{config.epochs}: loss {history.history['loss'][-1]:.4f}")
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    write_json_atomic(out / "manifest.json", {
        "kind": "lung-field segmenter",
        "config": config.to_json(),
        "parameters": int(model.count_params()),
        "trained_on": sorted({f"{p.source}/{p.stem}" for p in pairs}),
        "training_seconds": round(time.perf_counter() - started, 1),
    })
    return model


def _bce_dice_loss(tf):
    def loss(truth, predicted):
        bce = tf.reduce_mean(tf.keras.losses.binary_crossentropy(truth, predicted))
        overlap = tf.reduce_sum(truth * predicted, axis=[1, 2, 3])
        total = tf.reduce_sum(truth + predicted, axis=[1, 2, 3])
        return bce + tf.reduce_mean(1 - (2 * overlap + 1) / (total + 1))
    return loss


def predict(model, images: np.ndarray) -> np.ndarray:
    return model.predict(images[..., None], batch_size=32, verbose=0)[..., 0]
