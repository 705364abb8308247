"""The two ways a user runs a model: Keras on `model.keras`, LiteRT on a `.tflite` file.

Both expose `input_size` and `probabilities(scan)` for one (size, size, 1) uint8 scan, the
way a user classifies one image. The LiteRT side is edge's own `TFLiteClassifier` (the
device's interpreter loading and quantization); only the Keras side is written here.
TensorFlow is imported only when a Keras model is opened, so the LiteRT worker never loads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungcnn.edge.contract import first_line
from lungcnn.edge.manifest import read_manifest
from lungcnn.edge.runtime import ModelError, TFLiteClassifier

KERAS = "keras"
LITERT = "litert"


class KerasClassifier:
    """A saved Keras model called as `model(x)` on a batch, never `model.predict`."""

    def __init__(self, model_path: str | Path):
        import keras

        self.model_path = Path(model_path)
        self.input_size: int = read_manifest(self.model_path)["input"]["size"]
        try:
            self._model = keras.saving.load_model(self.model_path, compile=False)
        except Exception as error:  # Keras raises many types for a bad archive
            raise ModelError(f"{self.model_path}: not a loadable Keras model ({first_line(error)})") from None

    def probabilities(self, scan: np.ndarray) -> np.ndarray:
        return self.batch_probabilities(scan[None])[0]

    def batch_probabilities(self, scans: np.ndarray) -> np.ndarray:
        return np.asarray(self._model(scans, training=False), dtype=np.float32)


def runtime_of(model_path: str | Path) -> str:
    return KERAS if Path(model_path).suffix == ".keras" else LITERT


def open_classifier(model_path: str | Path, threads: int | None = None):
    """A Keras or LiteRT classifier for `model_path`; `threads` applies to LiteRT only
    (TensorFlow's thread pools are fixed per process, see benchmarks.worker)."""
    if runtime_of(model_path) == KERAS:
        return KerasClassifier(model_path)
    return TFLiteClassifier(model_path, threads=threads)


def predict_all(classifier, scans: np.ndarray, chunk: int = 16) -> np.ndarray:
    """Probabilities (n, classes) for a uint8 stack of scans: Keras in chunks, LiteRT one by one
    (the converted models have a fixed batch of one)."""
    if isinstance(classifier, KerasClassifier):
        return np.concatenate(
            [
                classifier.batch_probabilities(scans[start : start + chunk])
                for start in range(0, len(scans), chunk)
            ]
        )
    return np.stack([classifier.probabilities(scan) for scan in scans])
