"""The installed layout: one top-level package, `lungcnn`, whose commands start without
TensorFlow."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from setuptools import find_packages

REPO = Path(__file__).resolve().parents[1]


def test_the_distribution_installs_only_the_lungcnn_package():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = find_packages(str(REPO), **config["packages"]["find"])
    assert "lungcnn" in packages and "lungcnn.edge" in packages
    assert {name.split(".")[0] for name in packages} == {"lungcnn"}
    assert {"models/*.tflite", "models/*.json"} <= set(config["package-data"]["lungcnn.edge"])


def test_lungcnn_help_lists_every_stage_and_imports_no_tensorflow():
    code = ("import sys\n"
            "from lungcnn.cli import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    for command in ("train", "data", "convert", "calibrate", "bench", "bundle"):
        assert command in result.stdout


def test_python_dash_m_lungcnn_is_the_lungcnn_command():
    result = subprocess.run([sys.executable, "-m", "lungcnn", "bundle", "--help"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "RUN_DIR" in result.stdout and "--to" in result.stdout
