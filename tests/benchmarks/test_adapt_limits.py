"""What limits adaptation (`python -m lungcnn.benchmarks.adapt_limits`) on a one-fold layout
whose fold run is the tiny Keras run and its int8 model, held-out source: the base set's
pediatric scans."""

from __future__ import annotations

import json
import shutil

import numpy as np
import typer
from typer.testing import CliRunner

from lungcnn.benchmarks.adapt import SEEDS
from lungcnn.benchmarks.adapt_limits import SHARES, adapt_limits_command, auc, feature_sets
from lungcnn.edge.errors import NOTICE


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(adapt_limits_command)
    return app


def test_every_feature_set_is_measured_at_k_and_at_its_ceiling(tiny_keras_run,
                                                               tiny_tflite_models,
                                                               dataset_dir, tmp_path):
    fold = tmp_path / "runs" / "base-pediatric"
    fold.mkdir(parents=True)
    model = tiny_tflite_models["int8"]
    shutil.copy2(model, fold / "model_int8.tflite")
    shutil.copy2(model.with_suffix(".json"), fold / "model_int8.json")
    shutil.copy2(tiny_keras_run / "model.keras", fold / "model.keras")
    result = CliRunner().invoke(_app(), ["--runs", str(tmp_path / "runs"), "--data",
                                         str(dataset_dir), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "adapt-limits.json").read_text())
    limits = saved["folds"]["base-pediatric"]
    assert limits["classes"] == [1, 2]
    # the tiny model's two rectified convolutions: 4 then 8 channels
    assert {name: block["dim"] for name, block in limits["feature_sets"].items()} == {
        "classifier input": 8, "every block's output": 12, "every ReLU output": 12}
    for block in limits["feature_sets"].values():
        assert [row["site_share"] for row in block["at_k"]] == list(SHARES)
        assert all(len(row["site"]) == len(SEEDS) and all(0 <= a <= 1 for a in row["site"])
                   for row in block["at_k"])
        ceiling = block["ceiling"]
        assert ceiling["site"] is None or ceiling["drop"] <= 0.02
    assert len(limits["gate_auc"]) == len(SEEDS)
    markdown = (tmp_path / "out" / "adapt-limits.md").read_text()
    assert NOTICE in markdown and "| base-pediatric | Normal, Viral Pneumonia |" in markdown


def test_feature_sets_of_a_depthwise_separable_design():
    widths = [16, 16, 24, 24, 32, 32, 96]  # stem, then (depthwise, pointwise) per block
    sets = feature_sets(widths)
    assert len(sets["classifier input"]) == 96
    assert len(sets["every block's output"]) == 16 + 24 + 32 + 96
    assert len(sets["every ReLU output"]) == sum(widths)


def test_auc_by_hand():
    assert auc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert auc(np.array([0.5]), np.array([0.5])) == 0.5
    assert auc(np.array([0.1, 0.9]), np.array([0.5])) == 0.5


def test_no_fold_run_is_a_usage_error(dataset_dir, tmp_path):
    result = CliRunner().invoke(_app(), ["--runs", str(tmp_path), "--data", str(dataset_dir),
                                         "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "no */model.keras" in result.stderr
