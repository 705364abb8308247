"""Occlusion heatmaps: they point at what the model uses, and save as a captioned PNG."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lungcnn.edge.api import Classifier
from lungcnn.edge.decode import read_grayscale
from lungcnn.edge.heatmap import (
    DISCLAIMER,
    colorize,
    heatmap_path,
    occlusion_heatmap,
    save_overlay,
)
from lungcnn.edge.runtime import TFLiteClassifier


def test_heat_is_highest_where_the_model_looks(toy_model):
    scan = np.full((64, 64, 1), 60, dtype=np.uint8)
    scan[40:56, 40:56] = 250  # bright bottom-right square: the toy model's evidence for Covid
    model = toy_model((slice(40, 56), slice(40, 56)))
    drops, target, base = occlusion_heatmap(model, scan, grid=8)
    assert drops.shape == (8, 8) and target == 0 and base[0] > 0.5
    row, column = np.unravel_index(np.argmax(drops), drops.shape)
    assert row >= 4 and column >= 4
    assert drops[:3, :3].max() == pytest.approx(0.0, abs=1e-9)  # far corner: no effect
    assert sum(model.batches) == 8 * 8 + 1
    model.batches.clear()
    occlusion_heatmap(model, scan, grid=8, base=base)  # probabilities known: not run again
    assert sum(model.batches) == 8 * 8


def test_colorize_spans_dark_to_bright():
    colours = colorize(np.array([0.0, 0.5, 1.0]))
    assert colours.dtype == np.uint8 and colours.shape == (3, 3)
    assert colours[0].sum() < colours[1].sum() < colours[2].sum()


def test_overlay_png_has_caption_and_disclaimer(tmp_path):
    gray = np.tile(np.linspace(0, 255, 100, dtype=np.uint8), (80, 1))
    drops = np.zeros((8, 8))
    drops[2, 5] = 0.3
    path = save_overlay(tmp_path / "heat.png", gray, drops, {"Class": "Covid"})
    with Image.open(path) as image:
        assert image.mode == "RGB" and image.size == (384, 384)
        assert image.text["Class"] == "Covid" and image.text["Disclaimer"] == DISCLAIMER
        pixels = np.asarray(image).astype(int)
    assert (np.abs(pixels[..., 0] - pixels[..., 2]) > 20).any()  # coloured somewhere
    flat = save_overlay(tmp_path / "flat.png", gray, np.zeros((8, 8)))
    assert flat.exists()  # nothing to show still gives the plain scan


def test_heatmap_with_a_tflite_model(tiny_tflite_models, train_scan_path):
    from lungcnn.edge.contract import load_scan

    classifier = TFLiteClassifier(tiny_tflite_models["int8"], threads=1)
    scan = load_scan(train_scan_path, classifier.input_size)
    drops, target, base = occlusion_heatmap(classifier, scan, grid=4)
    assert drops.shape == (4, 4) and np.isfinite(drops).all()
    assert target == int(np.argmax(base))


def test_heatmap_rejects_a_wrong_input(toy_model):
    with pytest.raises(ValueError):
        occlusion_heatmap(toy_model((slice(None), slice(None))), np.zeros((8, 8), np.uint8))


def test_heatmap_paths_are_unique_per_run(tmp_path):
    taken: set[str] = set()
    first = heatmap_path(tmp_path / "Covid" / "0100.jpeg", tmp_path, taken)
    second = heatmap_path(tmp_path / "Normal" / "0100.jpeg", tmp_path, taken)
    assert first.name == "0100.heatmap.png" and second.name == "0100-2.heatmap.png"


def test_classifier_heatmap_of_a_file(tiny_tflite_models, train_scan_path, tmp_path):
    classifier = Classifier(tiny_tflite_models["int8"], threads=1)
    out = tmp_path / "scan.heatmap.png"
    classifier.heatmap(train_scan_path, out, grid=4)
    with Image.open(out) as image:
        assert image.text["Class"] in classifier.class_names
        assert image.text["Scan"] == train_scan_path.name


def test_the_heatmap_of_the_scan_just_classified_reuses_its_input(
    tiny_tflite_models, train_scan_path, tmp_path, monkeypatch
):
    classifier = Classifier(tiny_tflite_models["int8"], threads=1)
    gray = read_grayscale(train_scan_path)
    result = classifier.classify_gray(gray, train_scan_path)
    batches = []
    run = classifier.runtime.run
    monkeypatch.setattr(classifier.runtime, "run", lambda b: batches.append(len(b)) or run(b))
    out = tmp_path / "reused.heatmap.png"
    classifier.heatmap(gray, out, grid=4, name=train_scan_path)
    assert sum(batches) == 4 * 4  # the occluded inputs only
    with Image.open(out) as image:
        assert image.text["Class"] == result.prediction.label
        assert image.text["Scan"] == train_scan_path.name
