"""The lung-field segmenter as an int8 TFLite file with its manifest (uint8 input and output,
like the classifier), its lung-field limits fitted on the training masks, and its Dice
measured through the device runtime (`edge.segmenter.LungSegmenter`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungcnn.convert.quantize import build_tflite, settings_for
from lungcnn.edge.lungfield import LungFieldSettings
from lungcnn.edge.manifest import (
    base_manifest,
    library_versions,
    sha256_file,
    write_bytes_atomic,
    write_json_atomic,
)
from lungcnn.edge.segmenter import SEGMENTER_KIND, LungSegmenter
from lungcnn.trainer.segmenter import dice_scores

SEGMENTER_FILE = "lungseg_int8.tflite"
_LIMIT_SLACK = 0.6  # plausible down to this fraction of the smallest training lungs


def fitted_limits(masks: np.ndarray) -> LungFieldSettings:
    """Plausible lungs, from the training masks: area and box no smaller than _LIMIT_SLACK of
    the smallest training lungs, area no larger than their largest plus the same slack."""
    areas = masks.reshape(len(masks), -1).mean(axis=1)
    widths = np.array([_extent(m.any(axis=0)) for m in masks > 0.5])
    heights = np.array([_extent(m.any(axis=1)) for m in masks > 0.5])
    return LungFieldSettings(
        threshold=0.5,
        min_area=round(float(areas.min()) * _LIMIT_SLACK, 4),
        max_area=round(min(0.95, float(areas.max()) / _LIMIT_SLACK), 4),
        min_width=round(float(widths.min()) * _LIMIT_SLACK, 4),
        min_height=round(float(heights.min()) * _LIMIT_SLACK, 4),
    )


def _extent(occupied: np.ndarray) -> float:
    index = np.flatnonzero(occupied)
    return (index[-1] - index[0] + 1) / len(occupied) if len(index) else 0.0


def write_segmenter(model, representative: np.ndarray, out_dir: Path, limits: LungFieldSettings,
                    evidence: dict) -> Path:
    """Convert to int8 and write `lungseg_int8.tflite` with its manifest into `out_dir`."""
    settings = settings_for("int8", "uint8")
    path = write_bytes_atomic(out_dir / SEGMENTER_FILE,
                              build_tflite(model, settings, representative[..., None]))
    manifest = base_manifest(path, size=int(representative.shape[1]), kind=SEGMENTER_KIND)
    manifest.update({
        "class_names": ["lung"],
        "output": "lung probability per pixel, same size as the input",
        "quantization": settings.to_json(),
        "lung_field": limits.to_json(),
        **evidence,
        "tflite_sha256": sha256_file(path),
        "file_bytes": path.stat().st_size,
        "libraries": library_versions(),
    })
    write_json_atomic(path.with_suffix(".json"), manifest)
    return path


def int8_dice(path: Path, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per-image Dice of the int8 file, run by the device runtime."""
    segmenter = LungSegmenter(path)
    probabilities = np.stack([segmenter.probabilities(image) for image in images])
    return dice_scores(probabilities, masks, segmenter.settings.threshold)
