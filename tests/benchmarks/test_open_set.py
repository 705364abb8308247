"""The open-set proxy on a tiny registered architecture: one held-out class, one epoch."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lungcnn.benchmarks.open_set import open_set_proxy
from lungcnn.trainer.architectures import ARCHITECTURES, ArchSpec

pytest.importorskip("tensorflow")


def _tiny(input_size: int):
    import keras
    from keras import layers

    inputs = keras.Input((input_size, input_size, 1))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax")(x))


@pytest.fixture
def tiny_arch(monkeypatch):
    recipe = replace(ARCHITECTURES["reference"].recipe, input_size=32, epochs=1,
                     augmentation=replace(ARCHITECTURES["reference"].recipe.augmentation,
                                          zoom=0.0, rotation_degrees=0.0, shift=0.0))
    monkeypatch.setitem(ARCHITECTURES, "tiny-open-set",
                        ArchSpec("tiny-open-set", "test only", _tiny, recipe))
    return "tiny-open-set"


def test_open_set_assesses_every_scan_of_the_unseen_class(tiny_arch, dataset_dir):
    report = open_set_proxy(tiny_arch, dataset_dir, log=lambda line: None,
                            held_out_classes=("Normal",))
    entry = report["held_out"]["Normal"]
    unseen, seen = entry["unseen"], entry["seen_val"]
    assert list(report["held_out"]) == ["Normal"]
    assert unseen["n"] == len(list((dataset_dir / "train" / "Normal").iterdir()))
    assert unseen["accuracy"] <= 0.1  # the model never learned the class (its unit may win rarely)
    for summary in (unseen, seen):
        assert 0 <= summary["flagged"] <= 1
        assert summary["flagged"] == pytest.approx(summary["uncertain"]
                                                   + summary["out_of_distribution"])
        assert summary["feature_distance_p50"] > 0  # the tiny model has a features output
    assert 0 <= report["unseen_flagged_mean"] <= 1 and "test/ is not read" in report["rule"]
