"""The data contract shared by every stage: class names, input size, and how a file
becomes the model's input array (decoded by `edge.decode`, then resized here).

Trainer, convert, edge and benchmarks all call `load_scan`, so the pixels a model is trained
on are exactly the pixels the device feeds it. Only numpy and Pillow are needed here
(pydicom for DICOM files, an optional extra); never TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lungcnn.edge.decode import read_grayscale

CLASS_NAMES: tuple[str, ...] = ("Covid", "Normal", "Viral Pneumonia")
INPUT_SIZE: int = 512  # the reference network's side; an architecture may declare another
# Bilinear with Pillow's support scaling is antialiased when shrinking, so a 4000 px scan
# and a 640 px re-encoding of it give nearly the same input. (The reference notebook used
# Keras' default nearest-neighbour resize, which aliases on large scans.)
RESAMPLE = Image.Resampling.BILINEAR
CONTRACT_VERSION = 1


@dataclass(frozen=True)
class ScanSpec:
    """What the contract promises a model: a square grayscale uint8 image of `size` pixels."""

    size: int = INPUT_SIZE

    def to_json(self) -> dict:
        return {
            "contract_version": CONTRACT_VERSION,
            "size": self.size,
            "channels": 1,
            "dtype": "uint8",
            "pixel_range": [0, 255],
            "grayscale": "ITU-R 601-2 luma (Pillow 'L'); 16-bit and DICOM scaled by real range",
            "resize": "bilinear, antialiased, aspect ratio not preserved",
        }


def load_scan(path: str | Path, size: int = INPUT_SIZE) -> np.ndarray:
    """Decode `path` into the model input: uint8 array of shape (size, size, 1), raw 0-255."""
    return resize_gray(read_grayscale(path), size)


def resize_gray(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D uint8 grayscale image to (size, size, 1), ignoring aspect ratio."""
    image = Image.fromarray(gray, mode="L")
    if image.size != (size, size):
        image = image.resize((size, size), RESAMPLE)
    return np.asarray(image, dtype=np.uint8)[:, :, None]
