"""Temperature scaling, ECE, gate fitting and `lungcnn calibrate` on the tiny run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from lungcnn.calibrate.calibration import calibrate_run
from lungcnn.calibrate.cli import EXIT_OK, calibrate_command
from lungcnn.calibrate.feature_distance import fit_class_whitening
from lungcnn.calibrate.gate import fit_gate
from lungcnn.calibrate.temperature import expected_calibration_error, fit_temperature
from lungcnn.edge.trust import PROB_FLOOR, TrustSettings, apply_temperature


def test_temperature_one_keeps_probabilities_above_the_floor():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.05, 0.9, 0.05]])
    np.testing.assert_allclose(apply_temperature(probabilities, 1.0), probabilities, atol=1e-9)


def test_higher_temperature_softens_and_rows_sum_to_one():
    probabilities = np.array([[0.98, 0.01, 0.01], [0.0, 1.0, 0.0]])
    softened = apply_temperature(probabilities, 3.0)
    np.testing.assert_allclose(softened.sum(axis=1), 1.0)
    assert (softened.max(axis=1) < probabilities.max(axis=1)).all()
    assert softened.argmax(axis=1).tolist() == [0, 1]
    # a zero probability is clipped to the floor, not -inf
    assert np.isfinite(apply_temperature(probabilities, 0.5)).all()
    assert PROB_FLOOR < 1 / 256


def test_fit_temperature_recovers_known_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 3))
    true_t = 2.5
    true_p = np.exp(logits / true_t) / np.exp(logits / true_t).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in true_p])
    overconfident = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    fitted = fit_temperature(overconfident, labels)
    assert fitted == pytest.approx(true_t, rel=0.15)  # sampling noise of 4000 labels
    before = expected_calibration_error(overconfident, labels)
    after = expected_calibration_error(apply_temperature(overconfident, fitted), labels)
    assert after < before


def test_ece_by_hand():
    probabilities = np.array([[0.9, 0.1, 0.0], [0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.6, 0.4, 0.0]])
    labels = np.array([0, 1, 0, 0])
    # bin of 0.9: accuracy 0.5 -> |0.5 - 0.9| = 0.4; bin of 0.6: accuracy 1 -> 0.4; weights 1/2
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.4)
    assert expected_calibration_error(np.eye(3), np.arange(3)) == pytest.approx(0.0)


def test_fit_gate_opens_the_harmless_side_and_keeps_floors():
    rows = [{"colourfulness": 0.0, "symmetry": 0.5 + i / 100, "contrast": 50.0 + i,
             "bright_fraction": 0.01} for i in range(20)]
    bounds = fit_gate(rows)
    assert bounds["colourfulness"][1] >= 8.0  # floor: a coloured arrow is not a photo
    assert bounds["bright_fraction"][1] >= 0.35
    assert bounds["symmetry"][1] > 1e6  # only a low symmetry is suspicious
    low, high = bounds["contrast"]
    assert low < 50.0 and high > 69.0
    assert "chest_layout" not in bounds  # no data, no bound


def test_calibrate_run_writes_every_manifest(calibrated_run):
    for name in ("manifest.json", "model_int8.json"):
        manifest = json.loads((calibrated_run / name).read_text())
        calibration, trust = manifest["calibration"], manifest["trust"]
        assert 0.25 <= calibration["temperature"] <= 20
        for key in ("ece_val_before", "ece_val_after", "ece_test_before", "ece_test_after"):
            assert 0.0 <= calibration[key] <= 1.0
        assert 0.0 <= trust["min_confidence"] <= 1.0
        assert sum(trust["val_flags"].values()) == pytest.approx(1.0)
        assert len(trust["chest_template"]) == 16 * 16
        settings = TrustSettings.from_manifest(manifest)
        # lung_field is always on: it judges only contract 2 inputs, and needs no fitting
        assert settings.fitted and set(settings.signals) == {"gate", "lung_field",
                                                             "feature_distance", "stability"}
        assert settings.of("gate").template.shape == (16, 16)


def _calibrate_app() -> typer.Typer:
    app = typer.Typer()
    app.command()(calibrate_command)
    return app


def test_calibrate_command_exit_codes(calibrated_run, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(_calibrate_app(), [str(calibrated_run)])
    assert ok.exit_code == EXIT_OK, ok.output
    assert "T=" in ok.output and "model_int8.tflite" in ok.output
    missing = runner.invoke(_calibrate_app(), [str(tmp_path / "no-run")])
    assert missing.exit_code == 2
    assert "manifest" in missing.output
    assert "Not a medical device" in runner.invoke(_calibrate_app(), ["--help"]).output


def test_calibrate_a_corrupt_keras_model_exits_2_in_one_line(calibrated_run, tmp_path):
    broken = tmp_path / "broken-run"
    shutil.copytree(calibrated_run, broken)
    (broken / "model.keras").write_bytes(b"not a keras archive")
    result = CliRunner().invoke(_calibrate_app(), [str(broken)])
    assert result.exit_code == 2
    assert "not a loadable Keras model" in result.output and "Traceback" not in result.output


def test_a_single_tflite_model_is_calibrated_from_its_training_section(calibrated_int8, tmp_path):
    model = tmp_path / calibrated_int8.name
    shutil.copy2(calibrated_int8, model)
    manifest = json.loads(calibrated_int8.with_suffix(".json").read_text())
    del manifest["calibration"], manifest["trust"]
    model.with_suffix(".json").write_text(json.dumps(manifest))
    written = calibrate_run(model, echo=lambda line: None)
    assert set(written) == {model.with_suffix(".json")}
    assert "trust" in json.loads(model.with_suffix(".json").read_text())
    del manifest["training"]
    model.with_suffix(".json").write_text(json.dumps(manifest))
    refused = CliRunner().invoke(_calibrate_app(), [str(model)])
    assert refused.exit_code == 2 and "no training split" in refused.output


def test_class_whitening_makes_each_class_spread_unit():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 2], 2000)  # class 1 has no training scans
    scales = np.where(labels[:, None] == 0, [2.0, 0.5, 1.0], [0.5, 1.0, 2.0])
    features = rng.normal(size=(4000, 3)) * scales + np.where(labels[:, None] == 2, 50.0, 0.0)
    fitted = fit_class_whitening(features, labels)
    assert fitted["classes"] == [0, 2] and fitted["projection"].shape == (3, 3)
    projected = (features - fitted["center"]) @ fitted["projection"]
    for index, label in enumerate(fitted["classes"]):
        members = projected[labels == label] - fitted["class_means"][index]
        whitened = members @ fitted["class_whitening"][index].T
        np.testing.assert_allclose(np.cov(whitened.T), np.eye(3), atol=0.1)


@pytest.mark.parametrize(("samples", "dims"), [(500, 6), (7, 32), (40, 1)])
def test_the_numpy_ledoit_wolf_matches_scikit_learn(samples, dims):
    from sklearn.covariance import LedoitWolf

    from lungcnn.edge.trust.feature_distance import ledoit_wolf

    values = np.random.default_rng(samples).normal(size=(samples, dims)) * np.arange(1, dims + 1)
    np.testing.assert_allclose(ledoit_wolf(values), LedoitWolf().fit(values).covariance_,
                               rtol=1e-10, atol=1e-12)


def test_calibrated_tiny_model_has_a_feature_threshold_from_validation(calibrated_run):
    manifest = json.loads((calibrated_run / "model_int8.json").read_text())
    section = manifest["trust"]["feature_distance"]
    dim = manifest["features_output"]["dim"]
    k = np.array(section["projection"]).shape[1]
    assert np.array(section["projection"]).shape == (dim, k) and k <= dim
    assert np.array(section["class_whitening"]).shape == (3, k, k)
    assert section["threshold"] > 0 and "validation" in section["rule"]


def test_a_model_with_outdated_thresholds_is_recalibrated(calibrated_int8, tmp_path):
    """An earlier format of the trust section makes the model unusable on the device (exit
    2), but calibrate replaces it instead of refusing to load the model."""
    model = tmp_path / calibrated_int8.name
    shutil.copy2(calibrated_int8, model)
    manifest = json.loads(calibrated_int8.with_suffix(".json").read_text())
    manifest["trust"]["feature_distance"] = {"whitening": [[1.0]], "threshold": 2.0}
    model.with_suffix(".json").write_text(json.dumps(manifest))
    written = calibrate_run(model, echo=lambda line: None)
    section = written[model.with_suffix(".json")]["trust"]["feature_distance"]
    assert "class_whitening" in section and "whitening" not in section
