"""A Keras model behind the one model interface (`edge.model.Model`), for the stages that
run the Keras source of a device model: calibrate, convert's parity, benchmarks.

`run` is one call of the model (never `model.predict`) that returns the probabilities and
the features the converted .tflite model has (the input of its classifier layer). TensorFlow
is imported only when a model is loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungcnn.edge.contract import Preprocessor, ScanSpec
from lungcnn.edge.errors import first_line
from lungcnn.edge.manifest import ManifestError, read_manifest
from lungcnn.edge.model import ContractInputs
from lungcnn.edge.runtime import ModelError, input_contract
from lungcnn.trainer.architectures import with_features_output


class KerasModel(ContractInputs):
    def __init__(self, model, class_names, input_size: int | None = None,
                 preprocessor: Preprocessor | None = None):
        self.keras_model = model
        self.class_names: tuple[str, ...] = tuple(class_names)
        self.input_size: int = input_size or int(model.input_shape[1])
        self.preprocessor = preprocessor or Preprocessor(ScanSpec(self.input_size))
        self._both = with_features_output(model, len(self.class_names))

    @property
    def features_dim(self) -> int | None:
        if self._both is self.keras_model:
            return None
        return int(self._both.outputs[1].shape[-1])

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        pixels = np.asarray(batch, dtype=np.float32)
        if self._both is self.keras_model:
            return np.asarray(self._both(pixels, training=False), dtype=np.float32), None
        # with_features_output builds its model on the list of the model's inputs
        probabilities, features = self._both([pixels], training=False)
        return np.asarray(probabilities, dtype=np.float32), np.asarray(features, dtype=np.float32)


def load_keras(model_path: str | Path):
    """The Keras model saved at `model_path`; ModelError (one line) when it cannot be loaded."""
    try:
        import keras
    except ImportError:
        raise ModelError("TensorFlow is not installed; Keras models need it: "
                         "pip install 'lungcnn[train]'") from None
    try:
        return keras.saving.load_model(model_path, compile=False)
    except Exception as error:  # Keras raises many types for a bad archive
        raise ModelError(
            f"{model_path}: not a loadable Keras model ({first_line(error)})") from None


def open_keras_model(model_path: str | Path) -> KerasModel:
    """The model of a trainer run (`model.keras` and its manifest), class names and input
    size from the manifest."""
    try:
        manifest = read_manifest(model_path)
    except ManifestError as error:
        raise ModelError(str(error)) from None
    preprocessor = input_contract(Path(model_path), manifest)
    return KerasModel(load_keras(model_path), manifest["class_names"], preprocessor.spec.size,
                      preprocessor)
