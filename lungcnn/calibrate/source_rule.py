"""Trust thresholds from leave-one-source-out evidence (`lungcnn calibrate --loso FILE`).

`lungcnn calibrate` fits its thresholds on validation scans, which come from the training
sources; scans from a new source need stricter ones. `lungcnn loso` chooses a rule on
held-out sources (`lungcnn.benchmarks.loso_report`): the feature-distance threshold times a
factor of at most 1, and a minimum stable confidence that never goes below the fitted one.
This applies that rule to a calibrated model's manifest and records where it came from.
When the results kept the conformal prediction set (`lungcnn.benchmarks.conformal`: nested
LOSO said it helps), its minimum probability, calibrated on every held-out source, is
written too ("prediction_set", read by `edge.trust.prediction_set`); otherwise it is removed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from lungcnn.edge.manifest import ManifestError, manifest_path, read_manifest, write_json_atomic


def read_rule(loso_results: Path) -> dict:
    """The rule chosen on every fold of a `lungcnn loso` results file, with its evidence."""
    try:
        result = json.loads(Path(loso_results).read_text())
        nested = result["report"]["nested_trust"]
        rule = nested["rule_on_all_folds"]
        factor, confidence = float(rule["distance_factor"]), float(rule["min_confidence"])
        prediction_set = _prediction_set(result.get("conformal") or {})
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ManifestError(f"{loso_results}: not a lungcnn loso results file ({error})") from None
    if not (math.isfinite(factor) and 0 < factor <= 1 and 0 <= confidence <= 1):
        raise ManifestError(f"{loso_results}: rule out of range: {rule}")
    return {"distance_factor": factor, "min_confidence": confidence,
            **({"prediction_set": prediction_set} if prediction_set else {}),
            "evidence": {"file": str(loso_results), "command": result.get("command"),
                         "held_out_sources": sorted(result["report"]["folds"]),
                         "nested_pooled": nested["pooled"]}}


def _prediction_set(conformal: dict) -> dict | None:
    """The kept prediction set's minimum probability and level (None when not kept)."""
    if not conformal.get("kept"):
        return None
    minimum, level = float(conformal["min_probability_all_folds"]), float(conformal["level"])
    if not (0 < minimum <= 1 and 0 < level <= 1):
        raise ValueError(f"prediction set out of range: {minimum}, {level}")
    return {"min_probability": minimum, "level": level}


def apply_rule(model_path: Path, rule: dict) -> dict:
    """Rewrite the trust section of `model_path`'s calibrated manifest with `rule`; returns
    the new trust section. ManifestError when the model has not been calibrated."""
    manifest = read_manifest(model_path)
    trust = dict(manifest.get("trust") or {})
    if "min_confidence" not in trust:
        raise ManifestError(f"{model_path}: calibrate the model before applying a rule")
    distance = dict(trust.get("feature_distance") or {})
    if distance:
        validation = float(distance.get("validation_threshold", distance["threshold"]))
        distance["validation_threshold"] = validation
        distance["threshold"] = round(validation * rule["distance_factor"], 4)
        trust["feature_distance"] = distance
    validation_confidence = float(trust.setdefault("validation_min_confidence",
                                                   trust["min_confidence"]))
    trust["min_confidence"] = max(validation_confidence, rule["min_confidence"])
    if "prediction_set" in rule:
        trust["prediction_set"] = dict(rule["prediction_set"])
    else:
        trust.pop("prediction_set", None)
    trust["source_rule"] = rule
    trust.pop("val_flags", None)  # measured with the validation thresholds: no longer true
    manifest["trust"] = trust
    write_json_atomic(manifest_path(model_path), manifest)
    return trust
