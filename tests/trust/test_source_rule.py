"""`lungcnn calibrate --loso`: the held-out-source trust rule written into a manifest."""

from __future__ import annotations

import json
import shutil

import pytest

from lungcnn.calibrate.source_rule import apply_rule, read_rule
from lungcnn.edge.api import Classifier
from lungcnn.edge.manifest import ManifestError, read_manifest


def loso_results(tmp_path, factor=0.5, confidence=0.99):
    path = tmp_path / "loso.json"
    path.write_text(json.dumps({"command": "lungcnn loso ...", "report": {
        "folds": {"a": {}, "b": {}},
        "nested_trust": {"pooled": {"wrong_flagged": 0.8},
                         "rule_on_all_folds": {"distance_factor": factor,
                                               "min_confidence": confidence}}}}))
    return path


def test_rule_scales_the_fitted_thresholds(calibrated_int8, tmp_path):
    model = tmp_path / calibrated_int8.name
    shutil.copy2(calibrated_int8, model)
    shutil.copy2(calibrated_int8.with_suffix(".json"), model.with_suffix(".json"))
    fitted = read_manifest(model)["trust"]
    trust = apply_rule(model, read_rule(loso_results(tmp_path)))
    assert trust["min_confidence"] == 0.99
    assert trust["validation_min_confidence"] == fitted["min_confidence"]
    distance = trust["feature_distance"]
    assert distance["threshold"] == pytest.approx(0.5 * fitted["feature_distance"]["threshold"],
                                                  abs=1e-3)
    assert trust["source_rule"]["evidence"]["held_out_sources"] == ["a", "b"]
    again = apply_rule(model, read_rule(loso_results(tmp_path, factor=0.8, confidence=0.0)))
    # Applied to the validation thresholds, not compounded; never looser than them.
    assert again["feature_distance"]["threshold"] == pytest.approx(
        0.8 * fitted["feature_distance"]["threshold"], abs=1e-3)
    assert again["min_confidence"] == fitted["min_confidence"]
    settings = Classifier(model).runtime.trust_settings
    assert settings.of("stability").min_confidence == fitted["min_confidence"]


def test_bad_rules_and_uncalibrated_models_are_refused(tmp_path, calibrated_int8):
    with pytest.raises(ManifestError, match="out of range"):
        read_rule(loso_results(tmp_path, confidence=1.5))
    with pytest.raises(ManifestError, match="out of range"):
        read_rule(loso_results(tmp_path, factor=2.0))
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ManifestError, match="not a lungcnn loso results file"):
        read_rule(tmp_path / "other.json")
    model = tmp_path / calibrated_int8.name
    shutil.copy2(calibrated_int8, model)
    manifest = read_manifest(calibrated_int8)
    manifest.pop("trust")
    model.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="calibrate the model"):
        apply_rule(model, read_rule(loso_results(tmp_path)))


def test_a_kept_prediction_set_is_written_and_a_dropped_one_removed(calibrated_int8, tmp_path):
    model = tmp_path / calibrated_int8.name
    shutil.copy2(calibrated_int8, model)
    shutil.copy2(calibrated_int8.with_suffix(".json"), model.with_suffix(".json"))
    results = loso_results(tmp_path)
    result = json.loads(results.read_text())
    result["conformal"] = {"kept": True, "level": 0.9, "min_probability_all_folds": 0.2}
    results.write_text(json.dumps(result))
    trust = apply_rule(model, read_rule(results))
    assert trust["prediction_set"] == {"min_probability": 0.2, "level": 0.9}
    assert Classifier(model).runtime.trust_settings.of("prediction_set").min_probability == 0.2
    result["conformal"]["kept"] = False
    results.write_text(json.dumps(result))
    assert "prediction_set" not in apply_rule(model, read_rule(results))
