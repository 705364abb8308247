"""The one model interface every stage runs a model through: trust, heatmap, calibrate,
parity and benchmarks. `edge.runtime.TFLiteClassifier` implements it on the device;
`trainer.keras_model.KerasModel` for a Keras model.

A model makes its own inputs from decoded scans (`prepare`: the data contract its manifest
names) and takes a uint8 batch (n, input_size, input_size, 1) of raw 0-255 pixels (the data
contract's model input) and returns, from a single invoke, the class probabilities (n,
classes) and its feature vectors (n, dim), or None for a model without a features output.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from lungcnn.edge.contract import Prepared, Preprocessor, ScanSpec


class Model(Protocol):
    class_names: tuple[str, ...]
    input_size: int
    preprocessor: Preprocessor  # the input contract: decode scale, segmenter

    @property
    def features_dim(self) -> int | None:
        """Length of the feature vectors `run` returns; None without a features output."""

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities, features or None) of a uint8 batch, from one invoke."""

    def prepare(self, gray: np.ndarray) -> Prepared:
        """The model input of a decoded 2-D uint8 scan, under the model's input contract
        (`edge.contract.prepare`), with the lung field it was cropped to (contract 2)."""

    def model_input(self, gray: np.ndarray) -> np.ndarray:
        """`prepare(gray).model_input`."""


class ContractInputs:
    """What a model with a `preprocessor` gets for its inputs: `spec`, `prepare` and
    `model_input` (the device's and the Keras implementation share it)."""

    preprocessor: Preprocessor

    @property
    def spec(self) -> ScanSpec:
        return self.preprocessor.spec

    def prepare(self, gray: np.ndarray) -> Prepared:
        """The model input of a decoded scan under this model's contract."""
        return self.preprocessor.prepare(gray)

    def model_input(self, gray: np.ndarray) -> np.ndarray:
        return self.prepare(gray).model_input


def run_all(model: Model, inputs, chunk: int = 16) -> tuple[np.ndarray, np.ndarray | None]:
    """`model.run` over a sequence of model inputs in chunks of `chunk`: (probabilities,
    features or None), one row per input, as float64."""
    inputs = list(inputs)
    if not inputs:
        return np.zeros((0, len(model.class_names))), None
    outputs = [model.run(np.stack(inputs[i : i + chunk])) for i in range(0, len(inputs), chunk)]
    probabilities = np.concatenate([p for p, _ in outputs]).astype(np.float64)
    if outputs[0][1] is None:
        return probabilities, None
    return probabilities, np.concatenate([f for _, f in outputs]).astype(np.float64)
