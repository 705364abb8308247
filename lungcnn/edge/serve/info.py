"""What `GET /v1/model` says about the loaded model, read from its manifest."""

from __future__ import annotations

from pathlib import PurePosixPath

from lungcnn.edge.api import Classifier
from lungcnn.edge.manifest import manifest_path, sha256_file
from lungcnn.edge.report import NOTICE


def model_info(classifier: Classifier) -> dict:
    manifest = classifier.manifest
    calibration = manifest.get("calibration") or {}
    return {
        "model_file": classifier.model_path.name,
        "labels": list(classifier.class_names),
        "input_size": classifier.input_size,
        "quantization": manifest.get("quantization"),
        "io": manifest.get("io"),
        "calibrated": "temperature" in calibration,
        "calibration_method": calibration.get("method"),
        "training_data": training_data_summary(manifest, classifier.class_names),
        "manifest_sha256": sha256_file(manifest_path(classifier.model_path)),
        "model_sha256": manifest.get("tflite_sha256"),
        "notice": NOTICE,
    }


def training_data_summary(manifest: dict, class_names: tuple[str, ...]) -> dict:
    """The architecture, dataset name and scan counts per split and class the manifest
    records (None where it does not say); the dataset's host path is not disclosed."""
    training = manifest.get("training") or {}
    split = training.get("split") or {}
    data_dir = training.get("data_dir")
    return {
        "arch": training.get("arch"),
        "dataset": PurePosixPath(str(data_dir)).name if data_dir else None,
        "split_seed": split.get("seed") if isinstance(split, dict) else None,
        "splits": {name: _count(files, class_names) for name, files in split.items()
                   if isinstance(files, list)} if isinstance(split, dict) else {},
        # the int8 representative set ("calibration_set" in manifests written before the rename)
        "representative_scans": (manifest.get("representative_set")
                                 or manifest.get("calibration_set") or {}).get("count"),
    }


def _count(files: list, class_names: tuple[str, ...]) -> dict:
    """Total scans of a split and how many sit in each class folder (`split/Class/file`)."""
    by_class = dict.fromkeys(class_names, 0)
    for relative in files:
        parts = PurePosixPath(str(relative)).parts
        if len(parts) >= 2 and parts[-2] in by_class:
            by_class[parts[-2]] += 1
    return {"total": len(files), "by_class": by_class}
