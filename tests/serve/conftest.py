"""Fixtures for the server: the tiny int8 model of tests/conftest.py and the committed
scans (the same fixtures tests/edge/conftest.py gives the device CLI's tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

SCANS_DIR = Path(__file__).resolve().parents[1] / "scans"


@pytest.fixture(scope="session")
def int8_model(tiny_tflite_models) -> Path:
    return tiny_tflite_models["int8"]


@pytest.fixture(scope="session")
def scan_files() -> list[Path]:
    return sorted(p for p in SCANS_DIR.iterdir() if p.suffix in (".jpg", ".png"))
