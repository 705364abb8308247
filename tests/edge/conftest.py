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



@pytest.fixture(scope="session")
def adaptable_model(int8_model, tmp_path_factory) -> Path:
    """A calibrated copy of the tiny int8 model with its replay features beside it, as
    `lungcnn bundle` ships the bundled model (for `edge-classify adapt` and `validate`)."""
    import json
    import shutil

    from lungcnn.bundle import write_replay_features
    from lungcnn.calibrate.calibration import calibrate_run

    folder = tmp_path_factory.mktemp("adaptable")
    model = folder / int8_model.name
    shutil.copy2(int8_model, model)
    shutil.copy2(int8_model.with_suffix(".json"), model.with_suffix(".json"))
    calibrate_run(model, echo=lambda line: None)
    write_replay_features(model, json.loads(model.with_suffix(".json").read_text()), None)
    return model


@pytest.fixture(scope="session")
def site_dir(dataset_dir, tmp_path_factory) -> Path:
    """A site of 6 Normal and 6 Covid scans (no Viral Pneumonia), SITE/<class>/..., from the
    base set's test split (scans the tiny model was not fitted on)."""
    import shutil

    site = tmp_path_factory.mktemp("site")
    for name in ("Normal", "Covid"):
        (site / name).mkdir()
        for path in sorted((dataset_dir / "test" / name).iterdir())[2:8]:
            shutil.copy2(path, site / name / path.name)
    return site
