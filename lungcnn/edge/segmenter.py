"""The lung-field segmenter on the device: a TFLite model and its manifest.

It takes the whole scan resized to its input (`edge.contract.segmenter_input`) and gives a
lung probability per pixel. Its manifest (`kind` "lung-field segmenter") carries the input
size, the lung-field limits (`edge.lungfield.LungFieldSettings`), its training data, its
cross-site scores and its hash; loading checks all of them against the file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from lungcnn.edge.interpreter import ModelError, dequantize, open_interpreter, quantize
from lungcnn.edge.lungfield import LungFieldSettings
from lungcnn.edge.manifest import ManifestError, read_manifest, sha256_file

SEGMENTER_KIND = "lung-field segmenter"


class LungSegmenter:
    def __init__(self, model_path: str | Path, threads: int | None = None,
                 expected_sha256: str | None = None):
        """Raises ModelError (one line) for a missing, altered or mismatched segmenter."""
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ModelError(f"{self.model_path}: lung-field segmenter not found")
        self.sha256 = sha256_file(self.model_path)
        try:
            self.manifest = read_manifest(self.model_path)
        except ManifestError as error:
            raise ModelError(str(error)) from None
        self._check(expected_sha256)
        self.side: int = self.manifest["input"]["size"]
        self._threads = threads
        self._interpreter = open_interpreter(self.model_path, threads)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        shapes = (tuple(self._input["shape"][1:]), tuple(self._output["shape"][1:]))
        if shapes != ((self.side, self.side, 1), (self.side, self.side, 1)):
            raise ModelError(f"{self.model_path}: input and output must be "
                             f"({self.side}, {self.side}, 1) as its manifest says")

    def _check(self, expected_sha256: str | None) -> None:
        where = self.model_path.with_suffix(".json")
        if self.manifest.get("kind") != SEGMENTER_KIND:
            raise ModelError(f"{where}: not a lung-field segmenter manifest")
        if expected_sha256 and expected_sha256 != self.sha256:
            raise ModelError(f"{self.model_path}: not the segmenter the classifier was "
                             "trained with (sha256 differs from its manifest)")
        if self.manifest.get("tflite_sha256") not in (None, self.sha256):
            raise ModelError(f"{self.model_path}: file differs from the one its manifest "
                             "describes (tflite_sha256)")
        try:
            self.settings = LungFieldSettings.from_json(self.manifest.get("lung_field"))
        except ValueError as error:
            raise ModelError(f"{where}: {error}") from None

    @property
    def files(self) -> tuple[Path, Path]:
        """The model file and its manifest: what travels beside every contract 2 model."""
        return self.model_path, self.model_path.with_suffix(".json")

    def copy_to(self, folder: Path) -> None:
        """Put the segmenter and its manifest into `folder` (a no-op where they already are)."""
        for path in self.files:
            target = Path(folder) / path.name
            if not target.exists() or target.resolve() != path.resolve():
                shutil.copyfile(path, target)

    def replica(self) -> LungSegmenter:
        """The same segmenter with an interpreter of its own, for another thread."""
        twin = object.__new__(LungSegmenter)
        twin.__dict__.update(self.__dict__)
        twin._interpreter = open_interpreter(self.model_path, self._threads)
        return twin

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Lung probability per pixel of a (side, side) uint8 segmenter input."""
        self._interpreter.set_tensor(self._input["index"], quantize(image[None, :, :, None],
                                                                    self._input))
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output["index"])
        return dequantize(raw, self._output)[0, :, :, 0]
