"""Fixtures for the trust tests: a private, calibrated copy of the tiny run (so the shared
run directory other stages test against is never modified) and toy models."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def calibrated_run(tiny_keras_run, tiny_tflite_models, tmp_path_factory) -> Path:
    """A copy of the tiny run with its int8 model, calibrated by `lungcnn calibrate`."""
    from lungcnn.calibrate.calibration import calibrate_run

    run_dir = tmp_path_factory.mktemp("calibrated_run")
    int8 = tiny_tflite_models["int8"]
    for source in (tiny_keras_run / "model.keras", tiny_keras_run / "manifest.json", int8,
                   int8.with_suffix(".json")):
        shutil.copy2(source, run_dir / source.name)
    calibrate_run(run_dir, echo=lambda line: None)
    return run_dir


@pytest.fixture(scope="session")
def calibrated_int8(calibrated_run) -> Path:
    return next(calibrated_run.glob("model_*.tflite"))


class BrightnessModel:
    """A toy model (`edge.model.Model`): Covid when `region` of the input is bright, Normal
    when it is dark, with a confidence that grows with the distance from mid-gray; its
    features are `features(batch)` when given. Counts its runs and their batch sizes."""

    class_names = ("Covid", "Normal", "Viral Pneumonia")

    def __init__(self, region: tuple[slice, slice], size: int = 64, features=None):
        from lungcnn.edge.contract import Preprocessor, ScanSpec

        self.region, self.input_size, self._features = region, size, features
        self.preprocessor = Preprocessor(ScanSpec(size))  # contract 1: the whole scan
        self.batches: list[int] = []

    def prepare(self, gray: np.ndarray):
        return self.preprocessor.prepare(gray)

    def model_input(self, gray: np.ndarray) -> np.ndarray:
        return self.prepare(gray).model_input

    @property
    def features_dim(self):
        return None if self._features is None else 2

    def run(self, batch: np.ndarray):
        self.batches.append(len(batch))
        means = batch[:, self.region[0], self.region[1], 0].reshape(len(batch), -1).mean(axis=1)
        covid = 1 / (1 + np.exp(-(means - 128) / 8))
        probabilities = np.stack([covid, 1 - covid, np.zeros_like(covid)], axis=1)
        return probabilities, None if self._features is None else self._features(batch)


def brightness_model(region: tuple[slice, slice], size: int = 64, features=None):
    return BrightnessModel(region, size, features)


@pytest.fixture
def toy_model():
    return brightness_model


@pytest.fixture(scope="session")
def train_scan_path(dataset_dir) -> Path:
    """A training scan of the tiny run (its gate was fitted on such scans)."""
    return sorted((dataset_dir / "train" / "Normal").iterdir())[0]


@pytest.fixture(scope="session")
def committed_scans() -> list[Path]:
    """The small real scans committed under tests/scans/."""
    folder = Path(__file__).resolve().parents[1] / "scans"
    return sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png"))
