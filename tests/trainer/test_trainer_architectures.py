"""The architecture registry: the reference network exactly, and the contract every entry keeps."""

from __future__ import annotations

import numpy as np
import pytest

from lungcnn.edge.contract import CLASS_NAMES
from lungcnn.trainer.architectures import ARCHITECTURES
from lungcnn.trainer.config import TrainConfig

keras = pytest.importorskip("keras")


def test_reference_network_matches_the_notebook():
    model = ARCHITECTURES["reference"].build(512)
    assert model.input_shape == (None, 512, 512, 1)
    assert [
        layer.name for layer in model.layers if "Layer" in layer.name or "Classifier" in layer.name
    ] == ["1stConvLayer", "1stPoolLayer", "2ndConvLayer", "2ndPoolLayer", "FinalClassifier"]
    assert model.get_layer("1stConvLayer").kernel_size == (5, 5)
    assert model.get_layer("1stPoolLayer").pool_size == (3, 3)
    assert model.get_layer("2ndConvLayer").kernel_size == (3, 3)
    assert model.get_layer("2ndPoolLayer").pool_size == (2, 2)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 82_923


def test_reference_recipe_is_the_notebook_recipe():
    recipe = ARCHITECTURES["reference"].recipe
    assert (recipe.epochs, recipe.batch_size, recipe.learning_rate) == (40, 16, 0.005)
    assert recipe.input_size == ARCHITECTURES["reference"].input_size == 512
    assert recipe.augmentation.zoom == 0.2 and recipe.augmentation.rotation_degrees == 15
    assert recipe.augmentation.shift == 0.05 and not recipe.early_stopping


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_takes_raw_pixels_and_rescales_once(name):
    spec = ARCHITECTURES[name]
    assert spec.name == name and isinstance(spec.recipe, TrainConfig) and spec.description
    model = spec.build(spec.input_size)
    assert model.input_shape == (None, spec.input_size, spec.input_size, 1)
    assert model.output_shape == (None, len(CLASS_NAMES))
    scaling = [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization))
    ]
    assert len(scaling) == 1 and isinstance(scaling[0], keras.layers.Rescaling)
    assert scaling[0].scale == pytest.approx(1 / 255) and scaling[0].offset == 0
    probs = model.predict(np.full((1, *model.input_shape[1:]), 255, np.uint8), verbose=0)
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)


def test_config_rejects_impossible_values():
    with pytest.raises(ValueError, match="val_fraction"):
        TrainConfig(val_fraction=1.5)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
