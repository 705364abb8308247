"""A run manifest whose split names absolute paths (hand-made, or a dataset moved and listed
by full path) converts like one with relative paths: no traceback from `relative_to`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lungcnn.convert.cli import app
from lungcnn.convert.scans import files_digest, split_name
from lungcnn.edge.manifest import read_manifest

pytest.importorskip("tensorflow")


def test_split_name_is_relative_under_the_root_and_absolute_outside(tmp_path):
    assert split_name(tmp_path / "train" / "Covid" / "a.png", tmp_path) == "train/Covid/a.png"
    outside = Path("/elsewhere/Covid/a.png")
    assert split_name(outside, tmp_path) == "/elsewhere/Covid/a.png"


def test_files_digest_accepts_files_outside_the_root(tmp_path):
    scan = tmp_path / "a" / "scan.png"
    scan.parent.mkdir()
    scan.write_bytes(b"x")
    assert len(files_digest([scan], tmp_path / "b")) == 64


def test_convert_a_run_whose_split_holds_absolute_paths(tiny_keras_run, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(tiny_keras_run / "model.keras", run_dir / "model.keras")
    manifest = json.loads((tiny_keras_run / "manifest.json").read_text())
    data_dir = Path(manifest["data_dir"])
    for name, files in manifest["split"].items():
        if isinstance(files, list):
            manifest["split"][name] = [str(data_dir / rel) for rel in files]
    manifest["data_dir"] = str(tmp_path)  # the split's files are all outside it
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "model.tflite"
    result = CliRunner().invoke(app, [str(run_dir / "model.keras"), "--quantize", "float32",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    parity = read_manifest(out)["parity"]
    expected = len(manifest["split"]["val"])
    assert parity["val"]["count"] == expected and parity["val"]["skipped"] == []
    assert parity["val"]["agreement"] == pytest.approx(1.0)
