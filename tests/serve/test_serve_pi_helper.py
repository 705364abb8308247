"""benchmarks/pi/pi_serve.py (check.sh's server step) against a real local server: the
record it prints is the CLI's record of the same scan."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from lungcnn.edge.api import Classifier

PI_SERVE = Path(__file__).resolve().parents[2] / "benchmarks" / "pi" / "pi_serve.py"


@pytest.fixture(scope="module")
def pi_serve():
    spec = importlib.util.spec_from_file_location("pi_serve", PI_SERVE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_post_prints_the_clis_record(pi_serve, live_server, scans_dir):
    scan = scans_dir / "normal-0101.jpg"
    port = int(live_server.rsplit(":", 1)[1])
    line = pi_serve.post_scan(port, scan, wait=30)
    assert json.loads(line) == Classifier().classify(scan).to_dict()


def test_post_fails_in_one_line_when_nothing_listens(pi_serve, scans_dir, capsys):
    port = pi_serve.free_port()
    assert pi_serve.main(["post", str(port), str(scans_dir / "normal-0101.jpg"),
                          "--wait", "1"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("pi-check: FAIL: the emulated server did not answer")
    assert "\n" not in error
