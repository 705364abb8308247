"""The Python API of the device kernel: classify a scan file or array without TensorFlow.

    from lungcnn import Classifier
    classifier = Classifier()                  # the bundled model, or Classifier("m.tflite")
    result = classifier.classify("scan.png")   # or a 2-D uint8 / H x W x 3 array
    result.to_dict()                           # exactly one `edge-classify --json` record
    classifier.heatmap("scan.png", "scan.heatmap.png")

The CLI, the server and the archive job all go through `Classifier.classify`, so every
front end gives the same answer for the same scan. Not a medical device.
"""

from __future__ import annotations

import copy
import os
import weakref
from pathlib import Path

import numpy as np
from PIL import Image

from lungcnn.edge.contract import seen_region
from lungcnn.edge.decode import DecodedScan, ScanError, colourfulness, file_problem
from lungcnn.edge.heatmap import (
    DEFAULT_GRID,
    heatmap_caption,
    occlusion_heatmap,
    overlay,
    save_overlay,
)
from lungcnn.edge.report import ScanResult
from lungcnn.edge.manifest import manifest_path
from lungcnn.edge.pixels import check_pixel_limit
from lungcnn.edge.runtime import ModelError, TFLiteClassifier
from lungcnn.edge.trust import Assessment, assess

BUNDLED_MODEL = Path(__file__).resolve().parent / "models" / "lungcnn_int8.tflite"

Scan = str | Path | bytes | bytearray | memoryview | np.ndarray


class Classifier:
    """A TFLite model with its manifest: labels, input size, calibration and trust checks.

    Raises `lungcnn.edge.runtime.ModelError` (one line) when the model or its manifest is
    unusable."""

    def __init__(self, model: str | Path | None = None, *, threads: int | None = None):
        self.model_path = Path(model) if model is not None else BUNDLED_MODEL
        _refuse_special_files(self.model_path)
        self._model = TFLiteClassifier(self.model_path, threads=threads)
        # The scan last classified (a weak reference: a large scan is not kept alive) and its
        # assessment, for its heatmap.
        self._last: tuple[weakref.ref | None, Assessment | None] = (None, None)

    def replica(self) -> Classifier:
        """The same model and manifest with an interpreter of its own, for another thread
        (`edge.workers`); the model file is not read or checked again."""
        twin = copy.copy(self)
        twin._model = self._model.replica()
        twin._last = (None, None)
        return twin

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._model.class_names

    @property
    def input_size(self) -> int:
        return self._model.input_size

    @property
    def manifest(self) -> dict:
        return self._model.manifest

    @property
    def runtime(self) -> TFLiteClassifier:
        return self._model

    def classify(self, scan: Scan, *, name: str | Path | None = None) -> ScanResult:
        """Classify one scan; a scan that cannot be decoded gives a result with its one-line
        error, never an exception. A scan is a path, the file's bytes (an upload) or a 2-D
        uint8 / H x W x 3 RGB array; `name` labels bytes and arrays in the record."""
        path = Path(name) if name is not None else _name_of(scan)
        try:
            decoded = self.decode(scan)
        except ScanError as error:
            return ScanResult(path, error=str(error))
        return self.classify_gray(decoded.gray, path, decoded.colourfulness)

    def classify_gray(self, gray: np.ndarray, path: Path, colour: float = 0.0) -> ScanResult:
        """Classify an already decoded 2-D uint8 scan (`decode(...).gray`), whose file had
        `colour` (`decode(...).colourfulness`)."""
        assessment = assess(self._model, gray, self._model.trust_settings, colour=colour)
        self._last = (weakref.ref(gray), assessment)
        prediction = self._model.prediction(assessment.raw_probabilities, assessment.label)
        return ScanResult(path, prediction=prediction, trust=assessment.to_record(),
                          calibrated_confidence=assessment.confidence)

    def heatmap(self, scan: Scan, out: str | Path | None = None, *,
                grid: int = DEFAULT_GRID, name: str | Path | None = None) -> Image.Image:
        """The occlusion heatmap of `scan` for its predicted class, drawn over the scan; also
        written as a PNG (with the notice in its text chunks, captioned with `name` or the
        scan's path) when `out` is given. The array just classified (`classify_gray`) is not
        resized or run again. Raises `edge.decode.ScanError` for a scan that cannot be
        decoded, OSError for `out`."""
        gray, assessment = self._classified(scan)
        if assessment is None:
            prepared = self._model.prepare(gray)
            model_input, field, base = prepared.model_input, prepared.lung_field, None
        else:
            model_input, field = assessment.model_input, assessment.lung_field
            base = assessment.raw_probabilities
        drops, target, base = occlusion_heatmap(self._model, model_input, grid, base=base)
        shown = seen_region(gray, self._model.spec, field)
        if out is not None:
            caption = heatmap_caption(Path(name) if name is not None else _name_of(scan),
                                      self.class_names[target], base[target], grid)
            save_overlay(out, shown, drops, caption)
        return overlay(shown, drops)

    def _classified(self, scan: Scan) -> tuple[np.ndarray, Assessment | None]:
        reference, assessment = self._last
        if reference is not None and scan is reference():  # the same array, as the CLI passes it
            return scan, assessment
        return self.decode(scan).gray, None

    def decode(self, scan: Scan) -> DecodedScan:
        """The scan's grayscale pixels and colourfulness, from one decode at the scale the
        model's contract needs (raises `edge.decode.ScanError`)."""
        if isinstance(scan, np.ndarray):
            return _array_to_gray(scan)
        if isinstance(scan, (bytearray, memoryview)):
            scan = bytes(scan)
        if not isinstance(scan, (str, Path, bytes)):
            raise ScanError(f"a scan must be a path, bytes or an array, not "
                            f"{type(scan).__name__}")
        return self._model.preprocessor.decode(scan)


def _name_of(scan: Scan) -> Path:
    if isinstance(scan, np.ndarray):
        return Path("<array>")
    if isinstance(scan, (bytes, bytearray, memoryview)):
        return Path("<bytes>")
    return Path(scan) if isinstance(scan, (str, Path)) else Path(f"<{type(scan).__name__}>")


def _refuse_special_files(model: Path) -> None:
    """A model or manifest that is a FIFO or a device would block or never end when read."""
    for path in (model, manifest_path(model)):
        try:
            problem = file_problem(os.stat(path))
        except (OSError, ValueError):
            continue  # missing or unreadable: the runtime says so
        if problem and problem.startswith("not a regular file"):
            raise ModelError(f"{path}: {problem}")


def _array_to_gray(array: np.ndarray) -> DecodedScan:
    """A 2-D grayscale or H x W x 3 RGB uint8 array as the contract's grayscale scan."""
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or min(array.shape[:2]) < 1:
        raise ScanError("an array scan must be 2-D grayscale or H x W x 3 RGB, uint8")
    check_pixel_limit(array.shape[1::-1])
    if array.ndim == 2:
        return DecodedScan(array)
    if array.shape[2] != 3:
        raise ScanError("an array scan must be 2-D grayscale or H x W x 3 RGB, uint8")
    gray = np.asarray(Image.fromarray(array, mode="RGB").convert("L"), dtype=np.uint8)
    return DecodedScan(gray, colourfulness(array.astype(np.float64)))
