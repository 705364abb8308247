"""The adapted model on disk: a copy of the base .tflite (the network is frozen, so the file
is unchanged) and of its companion files (contract 2's lung segmenter), its replay features,
and a new manifest carrying the refitted head, the new
temperature and thresholds, and what they were fitted on ("adaptation": the base model's
hashes, the site's scans per class), with the site's modes added to the feature distance.
Written so that a reader never finds a partly written
model: everything is staged and checked beside the target, the manifest goes last."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from lungcnn.edge.adapt import RULE, Adaptation, AdaptSettings, with_site_modes
from lungcnn.edge.api import Classifier
from lungcnn.edge.manifest import manifest_path, sha256_file, write_json_atomic
from lungcnn.edge.replay import replay_path
from lungcnn.edge.runtime import ModelError, companion_files


def adapted_manifest(base: Classifier, adaptation: Adaptation,
                     site: tuple[np.ndarray, np.ndarray], replay_scans: int,
                     settings: AdaptSettings) -> dict:
    """The base manifest with the head, calibration and trust of `adaptation`; `site`: the
    site's (features, labels)."""
    manifest = copy.deepcopy(base.manifest)
    calibration = dict(manifest.get("calibration") or {})
    calibration.update({"method": "temperature on log-probabilities of the adapted head, "
                                  "fitted on out-of-fold predictions (NLL)",
                        "temperature": round(adaptation.temperature, 4)})
    trust = dict(manifest.get("trust") or {})
    if trust:  # an uncalibrated base has no trust checks to refit
        rule_minimum = (trust.get("source_rule") or {}).get("min_confidence", 0.0)
        trust.update({"validation_min_confidence": adaptation.min_confidence,
                      "min_confidence": max(adaptation.min_confidence, rule_minimum)})
        trust.pop("val_flags", None)  # measured with the base model's head
        if "feature_distance" in trust:
            trust["feature_distance"] = with_site_modes(trust["feature_distance"], *site)
        manifest["trust"] = trust
    manifest.update({
        "head": adaptation.head.to_json(),
        "calibration": calibration,
        "adaptation": {
            "base_model": {"file": base.model_path.name,
                           "tflite_sha256": sha256_file(base.model_path),
                           "manifest_sha256": sha256_file(manifest_path(base.model_path))},
            "site_scans": {name: int((site[1] == label).sum())
                           for label, name in enumerate(base.class_names)},
            "replay_scans": replay_scans,
            "settings": {"site_share": settings.site_share, "l2": settings.l2,
                         "folds": settings.folds},
            "rule": RULE.format(site_share=settings.site_share, folds=settings.folds),
            "out_of_fold_accuracy": adaptation.out_of_fold,
            "thresholds": {"temperature": calibration["temperature"],
                           "min_confidence": trust.get("min_confidence"),
                           "feature_distance": (trust.get("feature_distance") or {})
                           .get("threshold")},
        },
    })
    return manifest


def write_adapted(base: Classifier, manifest: dict, out_dir: Path) -> Path:
    """Write the adapted model into `out_dir` under the base model's name; returns its path.
    Raises OSError when the folder cannot be written, ModelError when the staged model does
    not load (nothing is replaced then)."""
    target = out_dir / base.model_path.name
    if target.resolve() == base.model_path.resolve():
        raise ModelError(f"{out_dir}: is the base model's folder; the adapted model would "
                         "replace it")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {**manifest, "model_file": target.name}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".adapt-") as staging:
        staged = Path(staging) / target.name
        shutil.copyfile(base.model_path, staged)
        shutil.copyfile(replay_path(base.model_path), replay_path(staged))
        companions = companion_files(base.model_path)  # contract 2: the lung segmenter
        for path in companions:
            shutil.copyfile(path, Path(staging) / path.name)
        write_json_atomic(manifest_path(staged), manifest)
        Classifier(staged)  # the manifest is validated as every reader will
        # Killed half-way, the model has no manifest (readers refuse it), never a wrong one.
        manifest_path(target).unlink(missing_ok=True)
        os.replace(staged, target)
        os.replace(replay_path(staged), replay_path(target))
        for path in companions:
            os.replace(Path(staging) / path.name, out_dir / path.name)
        os.replace(manifest_path(staged), manifest_path(target))
    return target
