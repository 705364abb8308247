"""A TFLite model and its manifest, ready to classify contract-shaped scans.

The interpreter comes from ai_edge_litert, else tflite_runtime, and only if both are missing
from TensorFlow (which a device should not need). Quantization is read from the
interpreter's tensor details, so int8, uint8 and float32 models all take raw 0-255 pixels.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcnn.edge.contract import first_line
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
    """Runs one .tflite model; `predict` takes a (size, size, 1) uint8 scan."""

    def __init__(self, model_path: str | Path, threads: int | None = None, trust: bool = True):
        """`trust=False` ignores the manifest's calibration and trust sections (for
        `lungcnn calibrate`, which replaces them)."""
        self.model_path = Path(model_path)
        self.manifest = _read_model_manifest(self.model_path)
        self.class_names: tuple[str, ...] = tuple(self.manifest["class_names"])
        self.input_size: int = self.manifest["input"]["size"]
        self._interpreter = _open_interpreter(self.model_path, threads)
        self._input = self._interpreter.get_input_details()[0]
        self._output, self._features_output = split_outputs(
            self._interpreter.get_output_details(), len(self.class_names), self.model_path
        )
        self._check_against_manifest()
        self.trust_settings = self._trust_settings() if trust else TrustSettings()

    def _trust_settings(self) -> TrustSettings:
        try:
            settings = TrustSettings.from_manifest(self.manifest)
        except ManifestError as error:
            raise ModelError(f"{manifest_path(self.model_path)}: {error}") from None
        distance = settings.feature_distance
        if distance is not None and (
            not self.has_features
            or distance.dim != int(self._features_output["shape"][-1])
        ):
            raise ModelError(f"{manifest_path(self.model_path)}: trust feature_distance does "
                             "not fit the model's features output")
        return settings

    @property
    def has_features(self) -> bool:
        return self._features_output is not None

    def probabilities(self, scan: np.ndarray) -> np.ndarray:
        """Class probabilities (dequantized model output) for one contract-shaped scan."""
        self._invoke(scan)
        return self._read(self._output)

    def features(self, scan: np.ndarray) -> np.ndarray:
        """The model's feature vector (the input of its classifier layer) for one scan;
        only for models converted with a features output (`has_features`)."""
        if self._features_output is None:
            raise ModelError(f"{self.model_path}: model has no features output")
        self._invoke(scan)
        return self._read(self._features_output)

    def _invoke(self, scan: np.ndarray) -> None:
        self._interpreter.set_tensor(self._input["index"], self._quantize(scan))
        self._interpreter.invoke()

    def _read(self, detail: dict) -> np.ndarray:
        return _dequantize(self._interpreter.get_tensor(detail["index"])[0], detail)

    def predict(self, scan: np.ndarray) -> Prediction:
        return self.prediction(self.probabilities(scan))

    def prediction(self, probabilities: np.ndarray) -> Prediction:
        """The labelled Prediction of probabilities this model already computed."""
        best = int(np.argmax(probabilities))
        return Prediction(
            label=self.class_names[best],
            confidence=float(probabilities[best]),
            probabilities={
                name: float(p) for name, p in zip(self.class_names, probabilities, strict=True)
            },
        )

    def _quantize(self, scan: np.ndarray) -> np.ndarray:
        dtype = self._input["dtype"]
        pixels = scan[None].astype(np.float32)
        scale, zero_point = self._input["quantization"]
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
        features = self.manifest.get("features_output")
        if features and (not self.has_features
                         or int(self._features_output["shape"][-1]) != features.get("dim")):
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
