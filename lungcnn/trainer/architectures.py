"""The registry of trainable architectures, each with its default training recipe.

Adding an architecture touches only this file: write a builder and register an ArchSpec.
Builders import Keras inside themselves so that `lungcnn --help` does not load TensorFlow.
Every model takes raw 0-255 pixels of shape (size, size, 1) and starts with Rescaling(1/255):
the scaling lives in the graph, so exported models need no preprocessing beyond
`edge.contract.load_scan`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from lungcnn.edge.contract import CLASS_NAMES
from lungcnn.trainer.config import Augmentation, TrainConfig

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class ArchSpec:
    name: str
    description: str
    build: Callable[[int], keras.Model]  # input_size -> uncompiled model
    recipe: TrainConfig  # the default recipe; recipe.input_size is the default input size

    @property
    def input_size(self) -> int:
        return self.recipe.input_size


def build_reference(input_size: int) -> keras.Model:
    """The reference notebook's CNN: two small convolutions and a dense softmax head."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((input_size, input_size, 1)),
            layers.Rescaling(1 / 255),
            layers.Conv2D(4, 5, activation="relu", name="1stConvLayer"),
            layers.MaxPooling2D(3, 3, name="1stPoolLayer"),
            layers.Conv2D(4, 3, activation="relu", name="2ndConvLayer"),
            layers.MaxPooling2D(2, 2, name="2ndPoolLayer"),
            layers.Flatten(),
            layers.Dense(len(CLASS_NAMES), activation="softmax", name="FinalClassifier"),
        ],
        name="reference",
    )


# Feature vectors wider than this get no features output: a distance in the reference model's
# 27,556-wide Flatten space would need far more training scans than there are.
MAX_FEATURE_DIM = 256


def with_features_output(model: keras.Model, classes: int) -> keras.Model:
    """The model with a second output, the input of its classifier layer, so the device can
    measure how far a scan is from the training scans in the model's own feature space.
    Unchanged when that input is not a small flat vector."""
    import keras

    features = model.layers[-1].input
    dim = features.shape[-1]
    if len(features.shape) != 2 or dim is None or dim > MAX_FEATURE_DIM or dim == classes:
        return model
    return keras.Model(model.inputs, [model.outputs[0], features], name=f"{model.name}_features")


ARCHITECTURES: dict[str, ArchSpec] = {
    "reference": ArchSpec(
        name="reference",
        description="Reference notebook CNN, 512x512 input, 82,923 parameters "
        "(Adam 0.005, batch 16, 40 epochs, zoom/rotation/shift augmentation).",
        build=build_reference,
        recipe=TrainConfig(),
    ),
}


# Keras' default 0.99 lets batch normalization's inference statistics lag far behind weights
# that this recipe's learning rate moves fast, and validation predictions collapsed to one
# class for many epochs; 0.9 follows closely. Chosen on validation only: docs/training.md,
# "A change after selection".
BN_MOMENTUM = 0.9


def build_dsconv_std(input_size: int, border: float = 0.0) -> keras.Model:
    """Edge-native CNN: per-image standardisation, a strided stem and depthwise-separable
    blocks down to 1/64 of the side, global average pooling, dropout, softmax (19,227 params).

    Standardising each image inside the graph (LayerNormalization over H, W, C without
    learned scale) makes the labels invariant to linear contrast and brightness changes.
    `border` > 0 crops that fraction of the side off every edge inside the graph, where
    publication figures carry their text, arrows and frames; the input stays the full scan."""
    import keras
    from keras import layers

    def normalized_relu(x):
        return layers.ReLU()(layers.BatchNormalization(momentum=BN_MOMENTUM)(x))

    def separable(x, filters: int, stride: int):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = normalized_relu(x)
        x = layers.Conv2D(filters, 1, use_bias=False)(x)
        return normalized_relu(x)

    inputs = keras.Input((input_size, input_size, 1))
    x = layers.Rescaling(1 / 255)(inputs)
    if border:
        x = layers.Cropping2D(round(border * input_size))(x)
    x = layers.LayerNormalization(axis=[1, 2, 3], center=False, scale=False)(x)
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(x)
    x = normalized_relu(x)
    for filters, stride in ((24, 2), (32, 2), (32, 1), (64, 2), (64, 1), (96, 2)):
        x = separable(x, filters, stride)
    x = layers.Dropout(0.2)(layers.GlobalAveragePooling2D()(x))
    outputs = layers.Dense(len(CLASS_NAMES), activation="softmax")(x)
    return keras.Model(inputs, outputs, name="dsconv_std")


ARCHITECTURES["dsconv-std-160"] = ArchSpec(
    name="dsconv-std-160",
    description="Edge-native CNN, 160x160 input, 19,227 parameters: per-image standardisation, "
    "strided stem, 6 depthwise-separable blocks (batch-norm momentum 0.9), global average "
    "pooling (AdamW 0.003 "
    "wd 1e-3, cosine with 3 warm-up epochs, label smoothing 0.05, 60 epochs, geometric "
    "augmentation with black fill plus acquisition augmentation).",
    build=build_dsconv_std,
    recipe=TrainConfig(
        input_size=160,
        epochs=60,
        learning_rate=0.003,
        lr_schedule="cosine",
        warmup_epochs=3,
        weight_decay=1e-3,
        label_smoothing=0.05,
        augmentation=Augmentation(
            zoom=0.1,
            rotation_degrees=8.0,
            shift=0.05,
            brightness=0.1,
            contrast=0.3,
            blur_probability=0.3,
            blur_max_sigma=1.0,
            downscale_probability=0.3,
            downscale_min_factor=0.35,
            jpeg_probability=0.3,
            jpeg_min_quality=30,
            fill_mode="constant",
        ),
    ),
)


ARCHITECTURES["dsconv-std-160-acq"] = ArchSpec(
    name="dsconv-std-160-acq",
    description="dsconv-std-160 with stronger acquisition augmentation: gamma (film look) "
    "and sensor noise on top of its blur, resolution, JPEG, brightness and contrast.",
    build=build_dsconv_std,
    recipe=replace(ARCHITECTURES["dsconv-std-160"].recipe, augmentation=replace(
        ARCHITECTURES["dsconv-std-160"].recipe.augmentation, gamma=0.5, noise=0.03)),
)


ARCHITECTURES["dsconv-std-160-crop"] = ArchSpec(
    name="dsconv-std-160-crop",
    description="dsconv-std-160 that sees only the central part of the scan: 10% of the side "
    "cropped off every edge inside the graph (same recipe).",
    build=lambda input_size: build_dsconv_std(input_size, border=0.1),
    recipe=ARCHITECTURES["dsconv-std-160"].recipe,
)
