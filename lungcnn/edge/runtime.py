"""A TFLite model and its manifest, ready to classify contract-shaped scans.

The interpreter comes from ai_edge_litert, else tflite_runtime, and only if both are missing
from TensorFlow (which a device should not need). Quantization is read from the
interpreter's tensor details, so int8, uint8 and float32 models all take raw 0-255 pixels.
`TFLiteClassifier` is the device's implementation of the model interface (`edge.model`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcnn.edge.contract import Preprocessor, ScanSpec
from lungcnn.edge.head import Head
from lungcnn.edge.interpreter import (
    ModelError,
    check_tflite_file,
    dequantize,
    interpreter_class,
    open_interpreter,
    quantize,
)
from lungcnn.edge.manifest import (
    ManifestError,
    manifest_path,
    read_manifest,
    sha256_file,
)
from lungcnn.edge.model import ContractInputs
from lungcnn.edge.segmenter import LungSegmenter
from lungcnn.edge.trust import TrustSettings

__all__ = ["ModelError", "Prediction", "TFLiteClassifier", "companion_files", "input_contract",
           "interpreter_class", "split_outputs"]


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    probabilities: dict[str, float]


class TFLiteClassifier(ContractInputs):
    """One .tflite model with its manifest: the device's implementation of
    `edge.model.Model`. A batch goes through in one invoke when the model's batch dimension
    can be resized, else one invoke per scan."""

    def __init__(self, model_path: str | Path, threads: int | None = None, trust: bool = True):
        """`trust=False` ignores the manifest's calibration and trust sections (for
        `lungcnn calibrate`, which replaces them)."""
        self.model_path = Path(model_path)
        self.manifest = _read_model_manifest(self.model_path)
        self.class_names: tuple[str, ...] = tuple(self.manifest["class_names"])
        self.input_size: int = self.manifest["input"]["size"]
        self.preprocessor = input_contract(self.model_path, self.manifest, threads)
        self._threads = threads
        self._interpreter = open_interpreter(self.model_path, threads)
        self._input = self._interpreter.get_input_details()[0]
        self._output, self._features_output = split_outputs(
            self._interpreter.get_output_details(), len(self.class_names), self.model_path
        )
        self._batch = int(self._input["shape"][0])
        self._resizable = int(self._input.get("shape_signature", self._input["shape"])[0]) == -1
        self._check_against_manifest()
        self.head = self._head()
        self.trust_settings = self._trust_settings() if trust else TrustSettings()

    def replica(self) -> TFLiteClassifier:
        """The same model, manifest and settings with an interpreter of its own, for another
        thread (an interpreter must not be shared between threads)."""
        twin = copy.copy(self)
        twin._interpreter = open_interpreter(self.model_path, self._threads)
        twin._batch = int(self._input["shape"][0])
        twin.preprocessor = self.preprocessor.replica()
        return twin

    def _trust_settings(self) -> TrustSettings:
        where = manifest_path(self.model_path)
        try:
            settings = TrustSettings.from_manifest(self.manifest)
        except ManifestError as error:
            raise ModelError(f"{where}: {error}") from None
        distance = settings.of("feature_distance")
        if distance is not None and distance.dim != self.features_dim:
            raise ModelError(f"{where}: trust feature_distance does not fit the model's "
                             "features output")
        if distance is None and settings.fitted and self.features_dim is not None:
            raise ModelError(f"{where}: trust has no feature_distance for the model's "
                             "features output (run lungcnn calibrate again)")
        return settings

    def _head(self) -> Head | None:
        """The manifest's refitted classifier head (`edge.head`, written by
        `edge-classify adapt`), applied to the features output; None for the network's own."""
        if "head" not in self.manifest:
            return None
        try:
            return Head.from_json(self.manifest["head"], self.features_dim,
                                  len(self.class_names))
        except ManifestError as error:
            raise ModelError(f"{manifest_path(self.model_path)}: {error}") from None

    @property
    def features_dim(self) -> int | None:
        """Length of the model's feature vector (the input of its classifier layer); None
        for a model converted without a features output."""
        if self._features_output is None:
            return None
        return int(self._features_output["shape"][-1])

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities, features or None) of a (n, size, size, 1) uint8 batch: dequantized
        outputs, float32; the probabilities are the manifest's head's when it has one."""
        probabilities, features = self._run_network(batch)
        if self.head is not None:
            probabilities = self.head.probabilities(features)
        return probabilities, features

    def _run_network(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        batch = np.asarray(batch)
        if (batch.ndim != 4 or not len(batch)
                or batch.shape[1:] != (self.input_size, self.input_size, 1)):
            raise ValueError(f"a batch must be (n, {self.input_size}, {self.input_size}, 1)")
        if len(batch) != self._batch and self._resizable:
            self._interpreter.resize_tensor_input(self._input["index"], list(batch.shape))
            self._interpreter.allocate_tensors()
            self._batch = len(batch)
        if len(batch) == self._batch:
            return self._invoke(batch)
        rows = [self._invoke(scan[None]) for scan in batch]
        features = None if rows[0][1] is None else np.concatenate([f for _, f in rows])
        return np.concatenate([p for p, _ in rows]), features

    def _invoke(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        self._interpreter.set_tensor(self._input["index"], self._quantize(batch))
        self._interpreter.invoke()
        features = self._features_output
        return self._read(self._output), None if features is None else self._read(features)

    def _read(self, detail: dict) -> np.ndarray:
        return dequantize(self._interpreter.get_tensor(detail["index"]), detail)

    def prediction(self, probabilities: np.ndarray, label: int | None = None) -> Prediction:
        """The labelled Prediction of probabilities this model already computed (`label`:
        the class already chosen, default their argmax)."""
        best = int(np.argmax(probabilities)) if label is None else label
        return Prediction(
            label=self.class_names[best],
            confidence=float(probabilities[best]),
            probabilities={
                name: float(p) for name, p in zip(self.class_names, probabilities, strict=True)
            },
        )

    def _quantize(self, batch: np.ndarray) -> np.ndarray:
        return quantize(batch, self._input)

    def _check_against_manifest(self) -> None:
        expected_sha256 = self.manifest.get("tflite_sha256")
        if expected_sha256 and expected_sha256 != sha256_file(self.model_path):
            raise ModelError(
                f"{self.model_path}: file differs from the one its manifest describes "
                f"({manifest_path(self.model_path).name}: tflite_sha256)"
            )
        expected = (self.input_size, self.input_size, 1)
        input_shape = tuple(int(d) for d in self._input["shape"][1:])
        if input_shape != expected:
            raise ModelError(
                f"{self.model_path}: model input {input_shape} does not match its manifest "
                f"(input.size {self.input_size} -> {expected})"
            )
        if "features_output" in self.manifest:
            self._check_features_output(self.manifest["features_output"])

    def _check_features_output(self, described) -> None:
        where = manifest_path(self.model_path)
        dim = described.get("dim") if isinstance(described, dict) else None
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ModelError(f"{where}: features_output must be an object whose dim is a "
                             "positive integer")
        shape = described.get("shape", [1, dim])
        if (not isinstance(shape, list) or not shape or shape[-1] != dim
                or any(isinstance(n, bool) or not isinstance(n, int) for n in shape)):
            raise ModelError(f"{where}: features_output shape must be a list of integers "
                             "ending in its dim")
        if self.features_dim != dim:
            raise ModelError(f"{self.model_path}: model's features output does not match its "
                             "manifest (features_output.dim)")


def split_outputs(details: list[dict], classes: int, model_path: Path) -> tuple[dict, dict | None]:
    """(probabilities, features or None) among a model's output tensors: the probabilities
    have one value per class; a second output, if any, is the feature vector."""
    probabilities = [d for d in details if int(d["shape"][-1]) == classes]
    others = [d for d in details if int(d["shape"][-1]) != classes]
    if len(probabilities) != 1 or len(others) > 1:
        shapes = ", ".join(str(tuple(int(v) for v in d["shape"])) for d in details)
        raise ModelError(
            f"{model_path}: model outputs {shapes} do not match the {classes} classes of its "
            "manifest (expected one output of that many probabilities, optionally features)"
        )
    return probabilities[0], (others[0] if others else None)


def input_contract(model_path: Path, manifest: dict, threads: int | None = None) -> Preprocessor:
    """The model's input contract, with under contract 2 its segmenter (beside the model,
    checked against the hash the manifest gives). Raises ModelError."""
    try:
        spec = ScanSpec.from_json(manifest["input"])
    except ValueError as error:
        raise ModelError(f"{manifest_path(model_path)}: {error}") from None
    if spec.lung_field is None:
        return Preprocessor(spec)
    return Preprocessor(spec, LungSegmenter(model_path.parent / spec.lung_field.segmenter,
                                            threads, spec.lung_field.segmenter_sha256))


def companion_files(model_path: str | Path) -> tuple[Path, ...]:
    """What a model needs beside itself and its manifest: under contract 2 its lung-field
    segmenter and the segmenter's manifest (none under contract 1). Raises ModelError."""
    model_path = Path(model_path)
    lung_field = input_contract_spec(model_path).lung_field
    if lung_field is None:
        return ()
    segmenter = model_path.parent / lung_field.segmenter
    return (segmenter, segmenter.with_suffix(".json"))


def input_contract_spec(model_path: Path) -> ScanSpec:
    manifest = _read_model_manifest(model_path)
    try:
        return ScanSpec.from_json(manifest["input"])
    except ValueError as error:
        raise ModelError(f"{manifest_path(model_path)}: {error}") from None


def _read_model_manifest(model_path: Path) -> dict:
    """The model file is checked first, so a file that is not a model says so (rather than
    that no manifest is beside it)."""
    if not model_path.is_file():
        raise ModelError(f"{model_path}: model file not found")
    check_tflite_file(model_path)
    try:
        return read_manifest(model_path)
    except ManifestError as error:
        raise ModelError(str(error)) from None


