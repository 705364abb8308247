"""Calibrating a run: fit the temperature and every trust signal's thresholds of each model
and write them into its manifest.

Into the run manifest, and into the manifest of every `model_*.tflite` beside it (each
fitted with its own predictions, so an int8 model gets the thresholds of the int8 model):
  "calibration": temperature T (`calibrate.temperature`) and the ECE before and after it, on
                 validation and on test;
  "trust":       thresholds of the signals of `edge.trust`: the X-ray gate
                 (`calibrate.gate`), the minimum calibrated confidence
                 (`calibrate.stability`) and, for models with a features output, the
                 distance to the training scans in feature space (`calibrate.feature_distance`).
Everything is fitted on the run's train/ and validation files only; test/ is only reported.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from lungcnn.calibrate import feature_distance, gate, scans, stability, temperature
from lungcnn.edge.manifest import ManifestError, manifest_path, read_manifest, write_json_atomic
from lungcnn.edge.model import Model
from lungcnn.edge.runtime import TFLiteClassifier
from lungcnn.edge.trust import (
    FLAG_OK,
    FLAG_OUT_OF_DISTRIBUTION,
    FLAG_UNCERTAIN,
    TrustSettings,
    apply_temperature,
    evidence_of,
    judge,
)
from lungcnn.trainer.keras_model import open_keras_model


def calibrate_model(model: Model, data_dir: Path, split: dict[str, list[str]]) -> tuple[dict, dict]:
    """Fit the temperature and trust thresholds of one model; returns (calibration, trust).
    With a features output (`model.features_dim`) also the feature distance."""
    if not split.get("train") or not split.get("val"):
        raise ValueError("the run's split has no training or no validation files")
    train = scans.load_split(data_dir, split["train"], model)
    val = scans.load_split(data_dir, split["val"], model)
    val_labels = scans.labels_of(val)
    seen = scans.outputs_with_variants(model, val)
    blocks = seen.probabilities
    fitted_t = temperature.fit_temperature(blocks.reshape(-1, blocks.shape[2]),
                                           np.repeat(val_labels, blocks.shape[1]))
    calibration = temperature.calibration_section(blocks, val_labels, fitted_t)
    if split.get("test"):
        test = scans.load_split(data_dir, split["test"], model)
        calibration.update(temperature.ece_on_test(scans.outputs(model, test).probabilities[:, 0],
                                                   scans.labels_of(test), fitted_t))
    trust = {
        **stability.stability_fields(apply_temperature(blocks, fitted_t)),
        **gate.gate_fields(train),
        "rule": f"{gate.RULE}; {stability.RULE}",
        "fitted_on": "train (gate, template), validation (temperature, confidence)",
    }
    if seen.features is not None:
        train_features = scans.outputs(model, train).features[:, 0]
        trust["feature_distance"], _ = feature_distance.fit_feature_distance(
            train_features, scans.labels_of(train), seen.features, blocks.argmax(axis=2))
        trust["fitted_on"] = ("train (gate, template, feature means and covariance), "
                              "validation (temperature, confidence, feature threshold)")
    trust["val_flags"] = _val_flags(model, val, seen, calibration, trust)
    return calibration, trust


def _val_flags(model: Model, val: list, seen: scans.Outputs, calibration: dict,
               trust: dict) -> dict[str, float]:
    """Share of validation scans per flag, judged as the device judges them."""
    settings = TrustSettings.from_manifest({"calibration": calibration, "trust": trust},
                                           len(model.class_names))
    flags = np.array([
        judge(evidence_of(model_input, colour, seen.probabilities[i],
                          seen.variant_names,
                          None if seen.features is None else seen.features[i, 0], settings),
              settings).flag
        for i, (model_input, _, colour) in enumerate(val)
    ])
    return {flag: float(np.mean(flags == flag))
            for flag in (FLAG_OK, FLAG_UNCERTAIN, FLAG_OUT_OF_DISTRIBUTION)}


def open_model(model_path: Path) -> Model:
    """A model to calibrate: Keras, or TFLite without its old thresholds (replaced here)."""
    if model_path.suffix == ".keras":
        return open_keras_model(model_path)
    return TFLiteClassifier(model_path, trust=False)


def calibrate_run(
    target: Path, data_dir: Path | None = None, echo: Callable[[str], None] = print
) -> dict[Path, dict]:
    """Calibrate model.keras and every model_*.tflite of the run directory `target`, or the
    single .tflite file `target` (its manifest's "training" section names split and data);
    update their manifests in place."""
    if target.suffix == ".tflite":
        run = read_manifest(target).get("training") or {}
        if "split" not in run:
            raise ManifestError(f"{target}: manifest has no training split to calibrate on")
        models = [target]
    else:
        keras_model = target / "model.keras"
        run = read_manifest(keras_model)
        models = [keras_model] if keras_model.exists() else []
        models += sorted(target.glob("model_*.tflite"))
    data_dir = Path(data_dir or run["data_dir"])
    written = {}
    for model_path in models:
        manifest = read_manifest(model_path)
        calibration, trust = calibrate_model(open_model(model_path), data_dir, run["split"])
        manifest["calibration"], manifest["trust"] = calibration, trust
        path = manifest_path(model_path)
        write_json_atomic(path, manifest)
        written[path] = manifest
        echo(summary(model_path, calibration, trust))
    return written


def summary(model_path: Path, calibration: dict, trust: dict) -> str:
    ece = ", ".join(
        f"{key.removeprefix('ece_')} {calibration[key]:.3f}"
        for key in ("ece_val_before", "ece_val_after", "ece_test_before", "ece_test_after")
        if key in calibration
    )
    flags = ", ".join(f"{k} {v:.0%}" for k, v in trust["val_flags"].items())
    distance = trust.get("feature_distance")
    limit = (f"; feature distance <= {distance['threshold']:.2f} (fitted on validation)"
             if distance else "")
    return (f"{model_path.name}: T={calibration['temperature']:.3f}; ECE {ece}"
            f"{_ece_note(calibration)}; min confidence {trust['min_confidence']:.3f}{limit}; "
            f"validation flags: {flags}")


def _ece_note(calibration: dict) -> str:
    """Why ECE can rise: the temperature minimises validation log-loss, not ECE."""
    before, after = calibration.get("ece_val_before"), calibration.get("ece_val_after")
    if before is None or after is None or after <= before:
        return ""
    return (" (validation ECE rose: the temperature minimises validation log-loss, not ECE, "
            "and the binned ECE of a small split moves with a few scans)")
