"""The per-scan decision: X-ray gate, stability under re-acquisition, calibrated confidence."""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lungcnn.edge.acquisition import REACQUISITIONS, reacquisitions
from lungcnn.edge.decode import ScanError, colourfulness, decode_scan
from lungcnn.edge.manifest import ManifestError
from lungcnn.edge.runtime import TFLiteClassifier
from lungcnn.edge.trust import (
    FLAG_OK,
    FLAG_OUT_OF_DISTRIBUTION,
    FLAG_UNCERTAIN,
    FeatureDistance,
    TrustSettings,
    assess,
)
from lungcnn.edge.trust.stability import StabilitySettings

ALL = (slice(None), slice(None))


def _settings(min_confidence=0.0, **signals) -> TrustSettings:
    """Fitted settings with only the stability signal and `signals` on."""
    return TrustSettings(signals={"stability": StabilitySettings(min_confidence), **signals},
                         fitted=True)


def test_variants_keep_shape_and_dtype():
    scan = np.random.default_rng(0).integers(0, 256, (64, 64, 1), dtype=np.uint8)
    variants = reacquisitions(scan)
    assert list(variants) == list(REACQUISITIONS)
    assert all(v.shape == scan.shape and v.dtype == np.uint8 for v in variants.values())


def test_the_scan_and_its_variants_are_one_batch(toy_model):
    model = toy_model(ALL)
    assess(model, np.full((64, 64), 220, dtype=np.uint8), TrustSettings())
    assert model.batches == [1 + len(REACQUISITIONS)]


def test_colourfulness_separates_gray_from_colour(tmp_path, train_scan_path):
    gray = np.full((32, 32, 3), 120.0)
    photo = np.zeros((32, 32, 3))
    photo[:, :16] = (200, 30, 30)
    photo[:, 16:] = (20, 40, 220)
    assert colourfulness(gray) == pytest.approx(0.0)
    assert colourfulness(photo) > 50
    Image.fromarray(photo.astype(np.uint8)).save(tmp_path / "photo.png")
    assert decode_scan(tmp_path / "photo.png").colourfulness > 50
    assert decode_scan(train_scan_path).colourfulness < 8  # a training scan stored as RGB JPEG


def test_colourfulness_of_a_readable_but_odd_file_prints_no_warning(tmp_path):
    # A TIFF whose PlanarConfiguration tag points past the end: Pillow warns and reads on.
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buffer, format="TIFF")
    data = bytearray(buffer.getvalue())
    entry = data.find(struct.pack("<HH", 284, 3))
    data[entry : entry + 12] = struct.pack("<HHII", 284, 4, 1000, len(data) + 100)
    odd = tmp_path / "odd.tif"
    odd.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode_scan(odd).colourfulness > 50


def test_unfitted_settings_check_stability_only(toy_model):
    bright = np.full((64, 64), 220, dtype=np.uint8)
    result = assess(toy_model(ALL), bright, TrustSettings())
    assert result.flag == FLAG_OK
    assert "no calibration" in result.reason
    assert result.probabilities.sum() == pytest.approx(1.0)


def test_label_flipping_under_reacquisition_is_uncertain(toy_model):
    """Covid only while the top-left corner is bright: reframing moves the corner away."""
    scan = np.full((64, 64), 40, dtype=np.uint8)
    scan[:4, :4] = 255
    result = assess(toy_model((slice(0, 4), slice(0, 4))), scan, _settings(0.9))
    assert result.flag == FLAG_UNCERTAIN
    assert result.reason.startswith("unstable") and "reframed" in result.reason
    assert result.variant_labels["reframed"] != result.label
    record = result.to_record()
    assert record["flag"] == FLAG_UNCERTAIN and record["reason"] == result.reason
    assert 0 <= record["stable_confidence"] <= record["calibrated_confidence"] + 1e-9


def test_low_confidence_is_uncertain(toy_model):
    near_gray = np.full((64, 64), 130, dtype=np.uint8)
    result = assess(toy_model(ALL), near_gray, _settings(0.9))
    assert result.flag == FLAG_UNCERTAIN and "low calibrated confidence" in result.reason


def test_assess_rejects_a_non_2d_array(toy_model):
    with pytest.raises(ScanError):
        assess(toy_model(ALL), np.zeros((8, 8, 3), dtype=np.uint8), TrustSettings())


@pytest.fixture(scope="module")
def tiny_device(calibrated_int8):
    return TFLiteClassifier(calibrated_int8)


def _assess_file(model, path):
    scan = decode_scan(path)
    return assess(model, scan.gray, model.trust_settings, scan.colourfulness)


def _save(image: Image.Image, path):
    image.save(path)
    return path


def test_training_scan_passes_the_gate(calibrated_int8, train_scan_path):
    result = _assess_file(TFLiteClassifier(calibrated_int8), train_scan_path)
    assert result.flag != FLAG_OUT_OF_DISTRIBUTION, result.reason


@pytest.mark.parametrize("kind", ["blank", "noise", "colour_photo", "document"])
def test_non_xray_images_are_out_of_distribution(tiny_device, tmp_path, kind):
    rng = np.random.default_rng(1)
    if kind == "blank":
        image = Image.new("L", (300, 300), 0)
    elif kind == "noise":
        image = Image.fromarray(rng.integers(0, 256, (300, 300), dtype=np.uint8))
    elif kind == "colour_photo":
        image = Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).resize(
            (300, 300), Image.Resampling.BICUBIC)
    else:
        image = Image.new("L", (300, 400), 250)
        draw = ImageDraw.Draw(image)
        for row in range(20, 380, 16):
            draw.text((15, row), "radiology report page text " * 2, fill=0)
    result = _assess_file(tiny_device, _save(image, tmp_path / f"{kind}.png"))
    assert result.flag == FLAG_OUT_OF_DISTRIBUTION
    assert result.reason.startswith("unlike the training X-rays")


def test_a_tflite_model_gives_calibrated_probabilities(tiny_device, train_scan_path):
    result = _assess_file(tiny_device, train_scan_path)
    assert result.probabilities.sum() == pytest.approx(1.0)
    assert result.label == int(np.argmax(result.probabilities))
    assert 0 <= result.stability <= 1


# --- distance in feature space ---------------------------------------------------------------


def _unit_distance(threshold: float) -> FeatureDistance:
    """Classes 0 and 1 at -1 and +1 on the first of two axes, identity covariances; class 2
    had no training scans."""
    return FeatureDistance(center=np.zeros(2), projection=np.eye(2), classes=(0, 1),
                           class_means=np.array([[-1.0, 0.0], [1.0, 0.0]]),
                           class_whitening=np.stack([np.eye(2), np.eye(2)]), threshold=threshold)


def test_feature_distance_is_to_the_predicted_class():
    distance = _unit_distance(3.0)
    assert distance.distance(np.array([1.0, 0.0]), label=1) == pytest.approx(0.0)
    assert distance.distance(np.array([1.0, 0.0]), label=0) == pytest.approx(2.0)
    assert distance.distance(np.array([0.0, 4.0]), label=1) == pytest.approx(np.hypot(1, 4))
    assert distance.distance(np.array([1.0, 0.0]), label=2) == np.inf


def test_far_features_are_out_of_distribution(toy_model):
    """The toy model says Covid (label 0) for a bright scan: distances are to class 0."""
    settings = _settings(feature_distance=_unit_distance(3.0))
    scan = np.full((64, 64), 220, dtype=np.uint8)

    def features(point):
        return lambda batch: np.tile(point, (len(batch), 1))

    near = assess(toy_model(ALL, features=features([-1.0, 1.0])), scan, settings)
    far = assess(toy_model(ALL, features=features([3.0, 0.0])), scan, settings)
    assert near.label == far.label == 0
    assert near.flag == FLAG_OK and near.to_record()["feature_distance"] == pytest.approx(1.0)
    assert far.flag == FLAG_OUT_OF_DISTRIBUTION and "feature" in far.reason
    # Without class names (settings built by hand) the nearest class is given by its label.
    assert near.nearest_class == "0" and far.to_record()["nearest_class"] == "1"
    named = _settings(feature_distance=replace(_unit_distance(3.0), class_names=("C", "N", "V")))
    assert assess(toy_model(ALL, features=features([3.0, 0.0])), scan, named).nearest_class == "N"
    with pytest.raises(ValueError, match="features output"):
        assess(toy_model(ALL), scan, settings)


def test_a_nan_feature_distance_is_never_ok(toy_model):
    settings = _settings(feature_distance=_unit_distance(3.0))
    scan = np.full((64, 64), 220, dtype=np.uint8)
    nan = assess(toy_model(ALL, features=lambda b: np.full((len(b), 2), np.nan)), scan, settings)
    assert nan.flag == FLAG_OUT_OF_DISTRIBUTION and nan.to_record()["feature_distance"] is None
    assert nan.nearest_class is None


_GOOD_SECTION = {"center": [0.0, 0.0], "projection": [[1.0], [0.0]], "classes": [0],
                 "class_means": [[0.0]], "class_whitening": [[[1.0]]], "threshold": 2.0}


@pytest.mark.parametrize("change", [
    {"projection": [[1.0, 0.0]]},
    {"class_whitening": [[[1.0, 0.0], [0.0, 1.0]]]},
    {"classes": [0, 1]},
    {"threshold": -1},
    {"threshold": None},
    {"threshold": float("nan")},
    {"center": [float("nan"), 0.0]},
    {"class_whitening": [[[-1.0]]]},
    {"classes": [3]},
    {"classes": [True]},
    {"class_means": "0"},
])
def test_a_damaged_feature_distance_section_is_a_manifest_error(change):
    FeatureDistance.from_json(_GOOD_SECTION, classes=3)
    with pytest.raises(ManifestError):
        FeatureDistance.from_json({**_GOOD_SECTION, **change}, classes=3)


def test_the_tiny_int8_model_reports_its_feature_distance(calibrated_int8, train_scan_path):
    classifier = TFLiteClassifier(calibrated_int8)
    assert classifier.features_dim is not None
    assert classifier.trust_settings.of("feature_distance") is not None
    result = _assess_file(classifier, train_scan_path)
    assert result.feature_distance is not None and result.feature_distance >= 0
