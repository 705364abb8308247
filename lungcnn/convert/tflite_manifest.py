"""The manifest of a converted .tflite variant: tensors, hashes, converter settings,
int8 representative set and the run's training information (the parity report is added after)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict
from pathlib import Path

from lungcnn.convert.options import ConvertOptions
from lungcnn.convert.parity import tensor_details, tensor_summary
from lungcnn.convert.quantize import ConverterSettings
from lungcnn.convert.representative import RepresentativeSet
from lungcnn.convert.source import KerasSource
from lungcnn.edge.manifest import base_manifest, library_versions, sha256_file
from lungcnn.edge.runtime import interpreter_class

# What the TFLite manifest copies from the run manifest, so readers never retype it.
TRAINING_KEYS = ("arch", "config", "seed", "split", "model_sha256", "data_dir", "datasets",
                 "data_summary", "versions")


def tflite_manifest(
    source: KerasSource,
    settings: ConverterSettings,
    target: Path,
    content: bytes,
    representative: RepresentativeSet | None,
    options: ConvertOptions,
) -> dict:
    run = source.run_manifest
    input_detail, output_detail, features_detail = tensor_details(
        content, len(run["class_names"]), target.name
    )
    manifest = base_manifest(target, size=source.size, kind="tflite",
                             spec=source.preprocessor.spec)
    manifest["class_names"] = list(run["class_names"])
    manifest["input"].update(tensor_summary(input_detail))
    manifest.update(
        {
            "quantization": settings.quantization,
            "io": settings.io,
            "output": tensor_summary(output_detail),
            "tflite_sha256": hashlib.sha256(content).hexdigest(),
            "source_model": {
                "path": os.path.relpath(source.path.resolve(), target.parent.resolve()),
                "sha256": sha256_file(source.path),
                "bytes": source.path.stat().st_size,
            },
            "converter": {**settings.to_json(), "options": asdict(options)},
            "versions": library_versions(),
            "representative_set": (representative.description
                                   if settings.needs_representative else None),
            "training": {key: run[key] for key in TRAINING_KEYS if key in run},
        }
    )
    if features_detail is not None:
        manifest["features_output"] = {"dim": int(features_detail["shape"][-1]),
                                       **tensor_summary(features_detail)}
    # No "calibration"/"trust" sections: `lungcnn calibrate` fits them on each variant's own
    # predictions; a copy of the Keras model's would be wrong for int8.
    return manifest


def runtime_name() -> str:
    package = interpreter_class().__module__.split(".")[0]
    distribution = package.replace("_", "-")  # ai_edge_litert -> ai-edge-litert
    return f"{package} {library_versions().get(distribution, 'unknown')}"
