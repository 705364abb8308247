"""The two ways a user runs a model: Keras on `model.keras`, LiteRT on a `.tflite` file, both
behind the one model interface (`edge.model.Model`): LiteRT is edge's own `TFLiteClassifier`
(the device's interpreter loading and quantization), Keras `trainer.keras_model.KerasModel`.
TensorFlow is imported only when a Keras model is opened, so the LiteRT worker never loads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungcnn.edge.model import Model, run_all
from lungcnn.edge.runtime import TFLiteClassifier

KERAS = "keras"
LITERT = "litert"


def runtime_of(model_path: str | Path) -> str:
    return KERAS if Path(model_path).suffix == ".keras" else LITERT


def open_classifier(model_path: str | Path, threads: int | None = None) -> Model:
    """A Keras or LiteRT model for `model_path`; `threads` applies to LiteRT only
    (TensorFlow's thread pools are fixed per process, see benchmarks.worker)."""
    if runtime_of(model_path) == KERAS:
        from lungcnn.trainer.keras_model import open_keras_model

        return open_keras_model(model_path)
    return TFLiteClassifier(model_path, threads=threads)


def predict_all(model: Model, scans: np.ndarray, chunk: int = 16) -> np.ndarray:
    """Probabilities (n, classes) for a uint8 stack of scans, in batches of `chunk`."""
    return run_all(model, scans, chunk)[0]
