"""Fixtures for the device CLI: the committed test scans, DICOM files built from them, and
tiny TFLite models (with manifests) to classify them with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCANS_DIR = Path(__file__).resolve().parents[1] / "scans"


@pytest.fixture(scope="session")
def scans_dir() -> Path:
    return SCANS_DIR


@pytest.fixture(scope="session")
def scan_files() -> list[Path]:
    return sorted(p for p in SCANS_DIR.iterdir() if p.suffix in (".jpg", ".png"))


@pytest.fixture(scope="session")
def scan_gray(scan_files) -> np.ndarray:
    """The 8-bit grayscale pixels of the first committed scan."""
    with Image.open(scan_files[0]) as image:
        return np.asarray(image.convert("L"))


@pytest.fixture(scope="session")
def edge_models(tiny_tflite_models) -> dict[str, Path]:
    """quant -> .tflite path (manifest beside it), from the converter's shared fixture."""
    return tiny_tflite_models


@pytest.fixture(scope="session")
def int8_model(edge_models) -> Path:
    return edge_models["int8"]


@pytest.fixture(scope="session")
def dicom_writer():
    """`write_dicom` for tests (conftest modules are not importable)."""
    pytest.importorskip("pydicom")
    return write_dicom


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
) -> Path:
    """Write a minimal valid DICOM file (secondary capture, explicit VR little endian)."""
    from lungcnn.benchmarks.synthetic_dicom import secondary_capture

    allocated = 8 if pixels.dtype == np.uint8 else 16
    dataset = secondary_capture(*pixels.shape, bits_allocated=allocated,
                                bits_stored=bits_stored or allocated, photometric=photometric)
    if slope is not None:
        dataset.RescaleSlope = slope
        dataset.RescaleIntercept = intercept or 0
    if window is not None:
        dataset.WindowCenter, dataset.WindowWidth = window
    dataset.PixelData = np.ascontiguousarray(pixels).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path

