"""The refitted classifier head (edge.head), the fit of an adaptation (edge.adapt) and the
runtime applying a manifest's head, on synthetic features and the tiny int8 model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from lungcnn.edge.adapt import (
    AdaptError,
    AdaptSettings,
    check_site,
    fit_adaptation,
    sample_weights,
    site_head,
    weighted_quantile,
    with_site_modes,
)
from lungcnn.edge.head import Head, fit_head
from lungcnn.edge.manifest import ManifestError
from lungcnn.edge.runtime import ModelError, TFLiteClassifier
from lungcnn.edge.trust import FeatureDistance

CLASSES = 3


def blobs(centres: np.ndarray, per_class: int, seed: int, spread: float = 0.5):
    """Gaussian features around one centre per class: (features, labels)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(centres)), per_class)
    return centres[labels] + spread * rng.standard_normal((len(labels), centres.shape[1])), labels


CENTRES = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])


def test_the_fitted_head_separates_separable_classes():
    features, labels = blobs(CENTRES, 30, seed=0)
    head = fit_head(features, labels, np.full(len(labels), 1 / len(labels)), CLASSES, 0.01)
    probabilities = head.probabilities(features)
    assert probabilities.shape == (90, CLASSES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (probabilities.argmax(axis=1) == labels).mean() > 0.95


def test_a_head_survives_its_json_round_trip():
    features, labels = blobs(CENTRES, 10, seed=1)
    head = fit_head(features, labels, np.full(30, 1 / 30), CLASSES, 0.01)
    again = Head.from_json(json.loads(json.dumps(head.to_json())), 4, CLASSES)
    np.testing.assert_allclose(again.probabilities(features), head.probabilities(features),
                               rtol=1e-5)


@pytest.mark.parametrize(("change", "message"), [
    (lambda h: h.pop("bias"), "lacks bias"),
    (lambda h: h["weights"][0].__setitem__(0, float("nan")), "not finite"),
    (lambda h: h["mean"].append(0.0), "must fit"),
    (lambda h: h.__setitem__("scale", [0.0] * 4), "positive"),
    (lambda h: h.__setitem__("weights", "many"), "array of numbers"),
])
def test_a_damaged_head_is_refused(change, message):
    head = Head(np.zeros(4), np.ones(4), np.zeros((4, CLASSES)), np.zeros(CLASSES)).to_json()
    change(head)
    with pytest.raises(ManifestError, match=message):
        Head.from_json(head, 4, CLASSES)


def test_a_head_needs_a_features_output():
    head = Head(np.zeros(4), np.ones(4), np.zeros((4, CLASSES)), np.zeros(CLASSES)).to_json()
    with pytest.raises(ManifestError, match="no features output"):
        Head.from_json(head, None, CLASSES)


def _with_head(model, folder, head: dict):
    copy = folder / model.name
    shutil.copy2(model, copy)
    manifest = json.loads(model.with_suffix(".json").read_text())
    manifest["head"] = head
    copy.with_suffix(".json").write_text(json.dumps(manifest))
    return copy


def test_the_runtime_applies_the_manifest_head_to_the_features(int8_model, tmp_path):
    base = TFLiteClassifier(int8_model)
    dim = base.features_dim
    rng = np.random.default_rng(0)
    head = Head(rng.random(dim), 0.5 + rng.random(dim), rng.standard_normal((dim, CLASSES)),
                rng.standard_normal(CLASSES))
    adapted = TFLiteClassifier(_with_head(int8_model, tmp_path, head.to_json()))
    batch = rng.integers(0, 256, (2, base.input_size, base.input_size, 1), dtype=np.uint8)
    (network, features), (probabilities, same_features) = base.run(batch), adapted.run(batch)
    np.testing.assert_array_equal(features, same_features)
    np.testing.assert_allclose(probabilities, head.probabilities(features), rtol=1e-6)
    assert not np.allclose(probabilities, network, atol=1e-3)


def test_a_model_with_a_damaged_head_does_not_load(int8_model, tmp_path):
    dim = TFLiteClassifier(int8_model).features_dim
    head = Head(np.zeros(dim), np.ones(dim), np.zeros((dim, CLASSES + 1)),
                np.zeros(CLASSES + 1)).to_json()
    with pytest.raises(ModelError, match="head") as error:
        TFLiteClassifier(_with_head(int8_model, tmp_path, head))
    assert "\n" not in str(error.value)


def test_site_scans_carry_their_share_of_the_weight():
    labels = np.array([0, 0, 0, 1, 2, 2, 1, 1])
    is_site = np.arange(8) >= 6
    weights = sample_weights(labels, is_site, 0.4)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[is_site].sum() == pytest.approx(0.4)
    assert weights[:3].sum() == pytest.approx(weights[4:6].sum())  # classes balanced


def test_weighted_quantile_follows_the_weights():
    values = np.array([0.9, 0.1, 0.5])
    assert weighted_quantile(values, np.array([1.0, 1.0, 1.0]), 0.5) == 0.5
    weights = np.array([0.0, 0.05, 0.95])
    assert weighted_quantile(values, weights, 0.03) == 0.1
    assert weighted_quantile(values, weights, 0.06) == 0.5


def test_adaptation_learns_a_shifted_site_and_keeps_the_training_classes():
    replay, replay_labels = blobs(CENTRES, 60, seed=2)
    # The site's Normal scans look like nothing the training scans did.
    shifted = np.array([[0.0, 0.0, 0.0, 3.0]])
    site, _ = blobs(shifted, 25, seed=3)
    site_labels = np.ones(25, dtype=int)
    adaptation = fit_adaptation(replay, replay_labels, site[:10], site_labels[:10], CLASSES)
    assert (adaptation.head.probabilities(site[10:]).argmax(axis=1) == 1).mean() > 0.9
    test, test_labels = blobs(CENTRES, 30, seed=4)
    assert (adaptation.head.probabilities(test).argmax(axis=1) == test_labels).mean() > 0.9
    assert 0.25 <= adaptation.temperature <= 20
    assert 0.0 < adaptation.min_confidence <= 1.0
    assert set(adaptation.out_of_fold) == {"site", "replay"}


def test_the_site_share_trades_the_site_against_the_training_classes():
    replay, replay_labels = blobs(CENTRES, 60, seed=5)
    # The site's Normal scans lie between the training Covid and Normal scans.
    site, _ = blobs(np.array([[1.4, 0.6, 0.0, 0.0]]), 20, seed=6, spread=0.3)
    site_labels = np.ones(20, dtype=int)
    test, test_labels = blobs(CENTRES, 40, seed=7, spread=0.8)

    def accuracies(share: float) -> tuple[float, float]:
        head = site_head(replay, replay_labels, site[:10], site_labels[:10], CLASSES,
                         AdaptSettings(site_share=share))
        return ((head.probabilities(site[10:]).argmax(axis=1) == 1).mean(),
                (head.probabilities(test).argmax(axis=1) == test_labels).mean())

    (site_low, kept_low), (site_high, kept_high) = accuracies(0.02), accuracies(0.9)
    assert site_high > site_low and kept_high < kept_low


def test_the_site_head_is_the_adaptation_head():
    replay, replay_labels = blobs(CENTRES, 20, seed=8)
    site, site_labels = blobs(CENTRES, 6, seed=9)
    settings = AdaptSettings(site_share=0.2)
    adaptation = fit_adaptation(replay, replay_labels, site, site_labels, CLASSES, settings)
    head = site_head(replay, replay_labels, site, site_labels, CLASSES, settings)
    np.testing.assert_allclose(head.weights, adaptation.head.weights)
    np.testing.assert_allclose(head.bias, adaptation.head.bias)


def test_too_few_scans_of_a_class_the_site_has_are_refused():
    settings = AdaptSettings()
    check_site(np.array([1] * settings.min_per_class), ("Covid", "Normal", "Viral"), settings)
    with pytest.raises(AdaptError, match="Covid 2"):
        check_site(np.array([1] * 5 + [0, 0]), ("Covid", "Normal", "Viral"), settings)
    with pytest.raises(AdaptError, match="too few"):
        check_site(np.array([], dtype=int), ("Covid", "Normal", "Viral"), settings)


def test_a_scan_is_as_near_as_the_nearest_mode_of_its_class():
    section = {"center": [0.0, 0.0], "projection": [[1.0, 0.0], [0.0, 1.0]],
               "classes": [0, 1], "class_means": [[0.0, 0.0], [5.0, 5.0]],
               "class_whitening": [np.eye(2).tolist()] * 2, "threshold": 3.0}
    site = np.array([[10.0, 0.0], [10.5, 0.5], [9.5, -0.5], [10.0, 0.4], [10.2, -0.3]])
    with_mode = FeatureDistance.from_json(with_site_modes(section, site, np.zeros(5, int)))
    before = FeatureDistance.from_json(section)
    assert before.distance(np.array([10.0, 0.0]), 0) == pytest.approx(10.0)
    assert with_mode.distance(np.array([10.0, 0.0]), 0) < 1.0
    assert with_mode.distance(np.array([0.0, 0.0]), 0) == pytest.approx(0.0)
    assert with_mode.distance(np.array([5.0, 5.0]), 1) == pytest.approx(0.0)
    assert with_mode.distance(np.array([0.0, 0.0]), 2) == float("inf")
