"""Parity of a TFLite model with its Keras source on the run's validation and test splits,
run through the device's reader (edge.runtime: ai_edge_litert, quantization from the
interpreter's tensor details)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcnn.convert.errors import ConvertError
from lungcnn.convert.scans import load_scans, split_name
from lungcnn.edge.model import Model, run_all
from lungcnn.edge.runtime import TFLiteClassifier, interpreter_class, split_outputs
from lungcnn.trainer.dataset import DatasetError, label_of

# test_dedup: the test files that duplicate no training file (the release leaks some).
PARITY_SPLITS: tuple[str, ...] = ("val", "test", "test_dedup")


@dataclass(frozen=True)
class EvalSplit:
    """One split's decoded scans, their labels and the Keras model's probabilities."""

    name: str
    files: tuple[str, ...]  # as the run manifest names them (`convert.scans.split_name`)
    labels: np.ndarray
    images: np.ndarray
    keras_probs: np.ndarray
    skipped: tuple[str, ...]
    sources: tuple[str, ...] = ()  # each file's source (the run manifest's `sources`)


def load_eval_splits(
    run_manifest: dict, data_dir: Path, keras_model: Model
) -> dict[str, EvalSplit]:
    class_names = run_manifest["class_names"]
    splits = {}
    for name in PARITY_SPLITS:
        rels = run_manifest["split"].get(name) or []
        if not rels:
            continue
        batch = load_scans([data_dir / rel for rel in rels], keras_model.preprocessor)
        if not len(batch.images):
            raise ConvertError(
                f"none of the {len(rels)} '{name}' files of the run is readable under "
                f"{data_dir} (first: {batch.skipped[0]})"
            )
        files = tuple(split_name(path, data_dir) for path in batch.paths)
        probs = run_all(keras_model, batch.images, chunk=8)[0]
        known = run_manifest.get("sources") or {}
        sources = tuple((known.get(rel) or ["unknown"])[0] for rel in files)
        splits[name] = EvalSplit(
            name, files, _labels(files, class_names), batch.images, probs, batch.skipped,
            sources,
        )
    return splits


def _labels(files: Sequence[str], class_names: Sequence[str]) -> np.ndarray:
    try:
        return np.array([label_of(rel, class_names) for rel in files])
    except DatasetError as error:
        raise ConvertError(f"run manifest split: {error}") from None


def tflite_probabilities(tflite_path: Path, images: np.ndarray) -> np.ndarray:
    """Class probabilities for raw 0-255 scans through the device's own reader (which takes
    the quantization from the interpreter's tensor details)."""
    return run_all(TFLiteClassifier(tflite_path), images)[0]


def tensor_details(
    model_content: bytes, classes: int, name: str
) -> tuple[dict, dict, dict | None]:
    """(input, probabilities, features or None) tensor details as the runtime reports them."""
    interpreter = interpreter_class()(model_content=model_content)
    return (interpreter.get_input_details()[0],
            *split_outputs(interpreter.get_output_details(), classes, Path(name)))


def tensor_summary(detail: dict) -> dict:
    scale, zero_point = detail["quantization"]
    return {
        "shape": [int(n) for n in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "quantization": {"scale": float(scale), "zero_point": int(zero_point)},
    }


def parity_report(splits: dict[str, EvalSplit], tflite_probs: dict[str, np.ndarray]) -> dict:
    return {name: _split_parity(split, tflite_probs[name]) for name, split in splits.items()}


def _split_parity(split: EvalSplit, probs: np.ndarray) -> dict:
    from lungcnn.trainer.metrics import evaluate

    keras_top1 = split.keras_probs.argmax(axis=1)
    tflite_top1 = probs.argmax(axis=1)
    difference = np.abs(probs - split.keras_probs)
    return {
        "count": len(split.files),
        "agreement": float(np.mean(keras_top1 == tflite_top1)),
        "max_abs_prob_diff": float(difference.max()),
        "mean_abs_prob_diff": float(difference.mean()),
        "keras": _headline(evaluate(split.labels, split.keras_probs)),
        "tflite": _headline(evaluate(split.labels, probs)),
        "disagreements": [
            file
            for file, same in zip(split.files, keras_top1 == tflite_top1, strict=True)
            if not same
        ],
        "skipped": list(split.skipped),
        "by_source": _by_source(split, probs),
    }


def _by_source(split: EvalSplit, probs: np.ndarray) -> dict:
    """Keras and TFLite accuracy and AUC of each source's scans in the split."""
    from lungcnn.trainer.metrics import evaluate

    sources = np.array(split.sources or ["unknown"] * len(split.files))
    report = {}
    for source in sorted(set(sources)):
        rows = sources == source
        report[str(source)] = {
            "count": int(rows.sum()),
            "keras": _headline(evaluate(split.labels[rows], split.keras_probs[rows])),
            "tflite": _headline(evaluate(split.labels[rows], probs[rows])),
        }
    return report


def _headline(metrics: dict) -> dict:
    return {key: _finite_or_none(metrics[key]) for key in ("accuracy", "auc_macro")}


def _finite_or_none(value) -> float | None:
    value = None if value is None else float(value)
    return value if value is not None and math.isfinite(value) else None
