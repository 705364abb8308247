"""The bounded-cost benchmark (lungcnn.benchmarks.memory) on its smallest JPEG 2000 case:
each case run `--repeats` times per checkout, the highest peak and the median wall time
reported, with the command that regenerates it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lungcnn.benchmarks.memory import app


def test_repeats_give_a_median_wall_time_and_the_highest_peak(tmp_path, tiny_tflite_models):
    pytest.importorskip("pydicom")
    pytest.importorskip("openjpeg")
    args = ["--out", str(tmp_path), "--name", "j2k", "--case", "dicom-j2k-declared-small-file",
            "--repeats", "2", "--model", str(tiny_tflite_models["int8"])]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "j2k.json").read_text())
    assert report["repeats"] == 2 and len(report["load_average"]) == 2
    case = report["cases"][1]["this checkout"]
    assert case["runs"] == 2 and case["seconds"] > 0 and case["peak_mb"] > 0
    # the tiny model's contract decodes at full scale: refused from its header, one line
    assert case["exit"] == 1 and "needs about 384 MiB" in case["stderr"]
    text = (tmp_path / "j2k.md").read_text()
    assert "--case dicom-j2k-declared-small-file --repeats 2" in text
    assert "median wall s (this checkout)" in text
