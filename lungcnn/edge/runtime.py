"""A TFLite model and its manifest, ready to classify contract-shaped scans.

The interpreter comes from ai_edge_litert, else tflite_runtime, and only if both are missing
from TensorFlow (which a device should not need). Quantization is read from the
interpreter's tensor details, so int8, uint8 and float32 models all take raw 0-255 pixels.
`TFLiteClassifier` is the device's implementation of the model interface (`edge.model`).
"""

from __future__ import annotations

import copy
import importlib
import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcnn.edge.errors import first_line
from lungcnn.edge.head import Head
from lungcnn.edge.manifest import ManifestError, manifest_path, read_manifest, sha256_file
from lungcnn.edge.trust import TrustSettings

_RUNTIMES = (
    ("ai_edge_litert.interpreter", "Interpreter"),
    ("tflite_runtime.interpreter", "Interpreter"),
    ("tensorflow", "lite.Interpreter"),
)
_TFLITE_MAGIC = b"TFL3"  # FlatBuffer file identifier, bytes 4-8 of every .tflite file


class ModelError(ValueError):
    """A model that cannot be used: missing, not TFLite, or not matching its manifest."""


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    probabilities: dict[str, float]


def interpreter_class():
    """The first TFLite Interpreter class available; TensorFlow is the last resort."""
    for module_name, attribute_path in _RUNTIMES:
        try:
            found = importlib.import_module(module_name)
        except ImportError:
            continue
        for attribute in attribute_path.split("."):
            found = getattr(found, attribute)
        return found
    raise ModelError("no TFLite runtime installed: pip install ai-edge-litert")


class TFLiteClassifier:
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
        self._threads = threads
        self._interpreter = _open_interpreter(self.model_path, threads)
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
        twin._interpreter = _open_interpreter(self.model_path, self._threads)
        twin._batch = int(self._input["shape"][0])
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
        return _dequantize(self._interpreter.get_tensor(detail["index"]), detail)

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
        dtype = self._input["dtype"]
        scale, zero_point = self._input["quantization"]
        if batch.dtype == dtype and (not scale or (scale == 1.0 and zero_point == 0)):
            return batch  # raw pixels are already what the model takes
        pixels = batch.astype(np.float32)
        if np.issubdtype(dtype, np.integer):
            if scale:
                pixels = np.round(pixels / scale + zero_point)
            limits = np.iinfo(dtype)
            pixels = np.clip(pixels, limits.min, limits.max)
        return pixels.astype(dtype)

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


def _dequantize(raw: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.issubdtype(raw.dtype, np.integer) and scale:
        return (raw.astype(np.float32) - zero_point) * scale
    return raw.astype(np.float32)


def _read_model_manifest(model_path: Path) -> dict:
    if not model_path.is_file():
        raise ModelError(f"{model_path}: model file not found")
    try:
        return read_manifest(model_path)
    except ManifestError as error:
        raise ModelError(str(error)) from None


def _open_interpreter(model_path: Path, threads: int | None):
    try:
        with model_path.open("rb") as stream:
            head = stream.read(8)
    except OSError as error:
        raise ModelError(f"{model_path}: cannot read model ({error.strerror or error})") from None
    if head[4:8] != _TFLITE_MAGIC:
        raise ModelError(f"{model_path}: not a TFLite model file")
    interpreter_type = interpreter_class()
    native_log: list[str] = []
    with _native_stderr_captured(native_log):
        try:
            interpreter = interpreter_type(model_path=str(model_path), num_threads=threads)
            interpreter.allocate_tensors()
        except Exception as error:  # the runtimes raise ValueError/RuntimeError with long texts
            failure = first_line(error)
        else:
            return interpreter
    details = _last_line("".join(native_log))
    reason = f"{failure}: {details}" if details else failure
    raise ModelError(f"{model_path}: cannot load TFLite model ({reason})")


@contextmanager
def _native_stderr_captured(lines: list[str]):
    """Capture into `lines` what the C++ runtime prints on file descriptor 2 while loading a
    model: its INFO chatter would pollute every run, and on failure its last line is the
    real reason."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.append(sink.read().decode(errors="replace"))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
