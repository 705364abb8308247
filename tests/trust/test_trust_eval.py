"""The non-X-ray set and the trust evaluation report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.ood_images import non_xray_images, write_non_xray_images
from benchmarks.trust_eval import evaluate_trust, low_resolution_jpeg, risk_coverage
from edge.contract import read_grayscale


def test_non_xray_set_is_large_and_readable(tmp_path):
    images = non_xray_images()
    names = [name for name, _ in images]
    assert len(images) >= 50 and len(set(names)) == len(names)
    paths = write_non_xray_images(tmp_path)
    assert len(paths) == len(images)
    assert all(read_grayscale(path).ndim == 2 for path in paths[:10])


def test_risk_coverage_orders_by_score():
    correct = np.array([True, True, False, True, False])
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.2])
    rows = {row["coverage"]: row["accuracy"] for row in risk_coverage(correct, scores)}
    assert rows[1.0] == pytest.approx(0.6)
    assert rows[0.6] == pytest.approx(1.0)


def test_low_resolution_copy_is_small():
    gray = np.zeros((400, 300), dtype=np.uint8)
    assert max(low_resolution_jpeg(gray, 64).shape) == 128


def test_evaluate_trust_reports_every_section(calibrated_int8, calibrated_run):
    run = json.loads((calibrated_run / "manifest.json").read_text())
    report = evaluate_trust(calibrated_int8, run["split"], Path(run["data_dir"]), proxies=False)
    test = report["test"]
    assert test["n"] == len(run["split"]["test"])
    assert 0 <= test["abstain_rate"] <= 1 and len(test["risk_coverage"]) > 3
    assert 0 <= report["non_xray"]["refused_rate"] <= 1
    assert report["non_xray"]["n"] >= 50
    assert report["heatmap_ms_one_thread"]["n"] > 0
    assert "ece_before" in test and "ece_after" in test
