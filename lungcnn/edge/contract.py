"""The data contract shared by every stage: class names, input size, and how a decoded scan
becomes the model's input array (`prepare`; files are decoded by `edge.decode`).

Trainer, convert, calibrate, edge, the server, the archive and the benchmarks all make model
inputs with `prepare` (through a model's `Preprocessor`), so the pixels a model is trained on
are exactly the pixels the device feeds it. Contract 1 resizes the whole scan; contract 2
crops it to the lung field (docs/lung-field.md). The model's manifest (`input`) says which.
Only numpy and Pillow are needed here (pydicom for DICOM files, an optional extra); never
TensorFlow.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from lungcnn.edge.decode import DecodedScan, decode_scan, read_grayscale
from lungcnn.edge.lungfield import (
    LungField,
    LungFieldSettings,
    find_lung_field,
    lung_pixels,
    margin_box,
)

CLASS_NAMES: tuple[str, ...] = ("Covid", "Normal", "Viral Pneumonia")
INPUT_SIZE: int = 512  # the reference network's side; an architecture may declare another
# Bilinear with Pillow's support scaling is antialiased when shrinking, so a 4000 px scan
# and a 640 px re-encoding of it give nearly the same input. (The reference notebook used
# Keras' default nearest-neighbour resize, which aliases on large scans.)
RESAMPLE = Image.Resampling.BILINEAR
# Contract 1: the whole scan, resized. Contract 2: the lung field, found by a segmenter
# (`edge.segmenter`), cropped with a margin, resized and histogram-equalised.
CONTRACT_VERSIONS = (1, 2)
_SEGMENTER_NAME = re.compile(r"[A-Za-z0-9_.-]+\.tflite")


@dataclass(frozen=True)
class LungFieldInput:
    """Contract 2's settings: the segmenter file beside the model (by name and SHA-256), the
    margin added around the lung box (a fraction of its size on every side), whether the
    crop is histogram-equalised, and whether what lies outside the (dilated) lungs is set to
    black, the equalisation then counting lung pixels only."""

    segmenter: str
    segmenter_sha256: str
    margin: float = 0.08
    equalize: bool = True
    mask_outside: bool = False

    def __post_init__(self) -> None:
        if not _SEGMENTER_NAME.fullmatch(self.segmenter):
            raise ValueError("input.lung_field.segmenter must be a .tflite file name")
        if not re.fullmatch(r"[0-9a-f]{64}", self.segmenter_sha256):
            raise ValueError("input.lung_field.segmenter_sha256 must be a SHA-256 hex digest")
        if isinstance(self.margin, bool) or not isinstance(self.margin, (int, float)) \
                or not 0 <= self.margin <= 0.5:
            raise ValueError("input.lung_field.margin must be a number from 0 to 0.5")
        for name in ("equalize", "mask_outside"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"input.lung_field.{name} must be true or false")

    @classmethod
    def from_json(cls, section) -> LungFieldInput:
        if not isinstance(section, dict) or set(section) - set(cls.__dataclass_fields__):
            raise ValueError("input.lung_field must be an object with segmenter, "
                             "segmenter_sha256, margin and equalize")
        try:
            return cls(**section)
        except TypeError:
            raise ValueError("input.lung_field needs segmenter and segmenter_sha256") from None


@dataclass(frozen=True)
class ScanSpec:
    """What the contract promises a model: a square grayscale uint8 image of `size` pixels, of
    the whole scan (contract 1) or of its lung field (contract 2, `lung_field` set)."""

    size: int = INPUT_SIZE
    lung_field: LungFieldInput | None = None

    @property
    def version(self) -> int:
        return 1 if self.lung_field is None else 2

    @property
    def decode_side(self) -> int | None:
        """The smallest side a scan must be decoded at (contract 2 decodes large scans at a
        reduced scale: every model input is small); None decodes at full resolution."""
        return None if self.lung_field is None else 2 * self.size

    def to_json(self) -> dict:
        described = {
            "contract_version": self.version,
            "size": self.size,
            "channels": 1,
            "dtype": "uint8",
            "pixel_range": [0, 255],
            "grayscale": "ITU-R 601-2 luma (Pillow 'L'); 16-bit and DICOM scaled by real range",
            "resize": "bilinear, antialiased, aspect ratio not preserved",
        }
        if self.lung_field is not None:
            described["lung_field"] = asdict(self.lung_field)
            described["decode_side"] = self.decode_side
        return described

    @classmethod
    def from_json(cls, section: dict) -> ScanSpec:
        """Raises ValueError naming the field that is wrong."""
        version = section.get("contract_version", 1)
        if version not in CONTRACT_VERSIONS:
            raise ValueError(f"input.contract_version {version!r} is not one this lungcnn "
                             f"knows ({', '.join(map(str, CONTRACT_VERSIONS))}): upgrade lungcnn")
        lung_field = section.get("lung_field")
        if (version == 2) != (lung_field is not None):
            raise ValueError("input.lung_field is required by contract 2 and only by it")
        return cls(section["size"], None if lung_field is None else LungFieldInput.from_json(lung_field))


@dataclass(frozen=True)
class Prepared:
    """A model input and, under contract 2, the lung field it was cropped to."""

    model_input: np.ndarray  # (size, size, 1) uint8
    lung_field: LungField | None = None


class Segmenter(Protocol):
    side: int
    settings: LungFieldSettings

    def probabilities(self, image: np.ndarray) -> np.ndarray: ...

    def replica(self) -> Segmenter: ...


@dataclass(frozen=True)
class Preprocessor:
    """A model's input contract with what it needs to run (the segmenter, under contract 2)."""

    spec: ScanSpec
    segmenter: Segmenter | None = None

    def prepare(self, gray: np.ndarray) -> Prepared:
        return prepare(gray, self.spec, self.segmenter)

    def decode(self, source: str | Path | bytes) -> DecodedScan:
        """Decode a scan at the scale this contract needs (raises ScanError)."""
        return decode_scan(source, self.spec.decode_side)

    def replica(self) -> Preprocessor:
        """The same, with a segmenter interpreter of its own for another thread."""
        return self if self.segmenter is None else Preprocessor(self.spec, self.segmenter.replica())


def prepare(gray: np.ndarray, spec: ScanSpec, segmenter: Segmenter | None = None) -> Prepared:
    """The model input of a decoded 2-D uint8 scan under `spec`: the one place every stage
    (trainer, convert, calibrate, device, server, archive, benchmarks) makes it. When no
    plausible lungs are found, the whole scan is used and `lung_field.problem` says why."""
    if spec.lung_field is None:
        return Prepared(resize_gray(gray, spec.size))
    if segmenter is None:
        raise ValueError("contract 2 needs the lung-field segmenter")
    probabilities = segmenter.probabilities(segmenter_input(gray, segmenter.side))
    field = find_lung_field(probabilities, segmenter.settings)
    box = seen_box(spec, field)
    model_input = resize_gray(crop(gray, box), spec.size)
    lungs = None
    if spec.lung_field.mask_outside and not field.problem:
        lungs = lung_pixels(probabilities >= segmenter.settings.threshold, box, spec.size)
    if spec.lung_field.equalize:
        model_input = equalize(model_input, lungs)
    if lungs is not None:
        model_input = np.where(lungs[:, :, None], model_input, 0).astype(np.uint8)
    return Prepared(model_input, field)


def seen_box(spec: ScanSpec, field: LungField | None) -> tuple[float, float, float, float]:
    """Where the part of the scan a model input shows lies (scan fractions): its lung field
    with the margin under contract 2 when plausible lungs were found, else the whole scan."""
    if spec.lung_field is None or field is None or field.problem:
        return (0.0, 0.0, 1.0, 1.0)
    return margin_box(field, spec.lung_field.margin)


def seen_region(gray: np.ndarray, spec: ScanSpec, field: LungField | None) -> np.ndarray:
    """The part of the scan a model input shows (`seen_box`)."""
    return crop(gray, seen_box(spec, field))


def as_preprocessor(contract: int | Preprocessor) -> Preprocessor:
    """`contract` itself, or contract 1 at that input size."""
    return contract if isinstance(contract, Preprocessor) else Preprocessor(ScanSpec(contract))


def model_input_of(gray: np.ndarray, contract: int | Preprocessor) -> np.ndarray:
    """The model input of a decoded scan under `contract` (`as_preprocessor`)."""
    return as_preprocessor(contract).prepare(gray).model_input


def crop(gray: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The part of `gray` inside `box` (fractions of the width and height), at least 1 pixel."""
    height, width = gray.shape
    left, right = int(box[0] * width), max(int(box[0] * width) + 1, round(box[2] * width))
    top, bottom = int(box[1] * height), max(int(box[1] * height) + 1, round(box[3] * height))
    return gray[top:bottom, left:right]


def equalize(image: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Histogram equalisation of a uint8 image (its histogram counted `where` is true, or
    everywhere): grey levels spread evenly over 0-255, so exposure and contrast, which differ
    by site, stop being cues."""
    counted = image if where is None or not where.any() else image[:, :, 0][where]
    counts = np.bincount(counted.ravel(), minlength=256)
    cumulative = np.cumsum(counts)
    lowest = cumulative[np.flatnonzero(counts)[0]]
    if cumulative[-1] == lowest:
        return image
    table = np.round((cumulative - lowest) / (cumulative[-1] - lowest) * 255)
    return np.clip(table, 0, 255).astype(np.uint8)[image]


def load_scan(path: str | Path, size: int = INPUT_SIZE) -> np.ndarray:
    """Decode `path` into a contract 1 model input: uint8 (size, size, 1), raw 0-255."""
    return resize_gray(read_grayscale(path), size)


def resize_gray(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D uint8 grayscale image to (size, size, 1), ignoring aspect ratio."""
    image = Image.fromarray(gray, mode="L")
    if image.size != (size, size):
        image = image.resize((size, size), RESAMPLE)
    return np.asarray(image, dtype=np.uint8)[:, :, None]


def segmenter_input(gray: np.ndarray, side: int) -> np.ndarray:
    """The lung-field segmenter's input: the whole scan as a (side, side) uint8 image."""
    return resize_gray(gray, side)[:, :, 0]
