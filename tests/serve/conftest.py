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


@pytest.fixture(scope="session")
def scans_dir() -> Path:
    return SCANS_DIR


@pytest.fixture(scope="session")
def live_server():
    """A real `edge-classify serve` (uvicorn) with the bundled model on 127.0.0.1; its URL.
    It must stop cleanly (exit 0) on SIGINT."""
    from lungcnn.benchmarks.serve_process import ServerProcess

    server = ServerProcess()
    with server:
        yield server.url
    assert server.returncode == 0, server.log()


@pytest.fixture(scope="session")
def dicom_writer():
    """tests/edge/conftest.py's `write_dicom` (conftest modules are not importable by name)."""
    import importlib.util

    pytest.importorskip("pydicom")
    path = Path(__file__).resolve().parents[1] / "edge" / "conftest.py"
    spec = importlib.util.spec_from_file_location("edge_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_dicom
