"""The adapt/validate timing benchmark (`python -m lungcnn.benchmarks.adapt_speed`) on the
smallest site it accepts: every command runs and is timed, the site is drawn evenly."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from lungcnn.benchmarks.adapt_speed import main, make_site
from lungcnn.edge.errors import NOTICE


def test_the_site_is_drawn_evenly_from_the_class_folders(dataset_dir, tmp_path):
    counts = make_site(dataset_dir / "train", 16, tmp_path / "site")
    assert counts == {"Covid": 6, "Normal": 5, "Viral Pneumonia": 5}
    assert all(len(list((tmp_path / "site" / name).iterdir())) == count
               for name, count in counts.items())


def test_adapt_and_validate_are_timed_beside_classify(dataset_dir, tmp_path):
    app = typer.Typer()
    app.command()(main)
    result = CliRunner().invoke(app, ["--scans", "15", "--repeats", "1", "--data",
                                      str(dataset_dir / "train"), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "adapt_speed.json").read_text())
    assert set(saved["median_s"]) == {"classify", "adapt", "validate"}
    assert all(len(runs) == 1 and runs[0] > 0 for runs in saved["seconds"].values())
    assert set(saved["ratio_to_classify"]) == {"adapt", "validate"}
    assert all(ratio > 0 for ratio in saved["ratio_to_classify"].values())
    assert NOTICE in (tmp_path / "adapt_speed.md").read_text()
