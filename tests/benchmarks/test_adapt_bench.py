"""The adaptation benchmark (`python -m lungcnn.benchmarks.adapt`) on a one-fold layout
whose fold model is the tiny int8 model, held-out source: the base set's pediatric scans."""

from __future__ import annotations

import json
import shutil

import typer
from typer.testing import CliRunner

from lungcnn.benchmarks.adapt import KS, SEEDS, adapt_command
from lungcnn.edge.errors import NOTICE


def test_the_benchmark_adapts_each_fold_for_every_k_and_seed(tiny_tflite_models, dataset_dir,
                                                            tmp_path):
    fold = tmp_path / "runs" / "base-pediatric"
    fold.mkdir(parents=True)
    model = tiny_tflite_models["int8"]
    shutil.copy2(model, fold / "model_int8.tflite")
    shutil.copy2(model.with_suffix(".json"), fold / "model_int8.json")
    app = typer.Typer()
    app.command()(adapt_command)
    result = CliRunner().invoke(app, ["--runs", str(tmp_path / "runs"), "--data",
                                      str(dataset_dir), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "adapt.json").read_text())
    rows = saved["folds"]["base-pediatric"]["rows"]
    assert len(rows) == 1 + (len(KS) - 1) * len(SEEDS)
    assert saved["folds"]["base-pediatric"]["classes"] == [1, 2]  # Normal, Viral Pneumonia
    k20 = [row for row in rows if row["k"] == 20]
    assert all(row["test_scans"] == 180 - 40 for row in k20)
    assert all(0 <= row[key] <= 1 for row in rows
               for key in ("site_before", "site_after", "val_before", "val_after"))
    markdown = (tmp_path / "out" / "adapt.md").read_text()
    assert NOTICE in markdown and "| base-pediatric | Normal, Viral Pneumonia | 20 |" in markdown
    assert (tmp_path / "out" / "adapt.png").stat().st_size > 0


def test_no_fold_model_is_a_usage_error(dataset_dir, tmp_path):
    app = typer.Typer()
    app.command()(adapt_command)
    result = CliRunner().invoke(app, ["--runs", str(tmp_path), "--data", str(dataset_dir),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "no */model_int8.tflite" in result.stderr
