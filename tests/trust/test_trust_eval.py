"""The non-X-ray set and the pieces of the benchmark's trust section (the section itself is
tested end to end in tests/benchmarks/test_bench_cli.py)."""

from __future__ import annotations

import numpy as np
import pytest

from lungcnn.benchmarks.ood_images import non_xray_images, write_non_xray_images
from lungcnn.benchmarks.trust import low_resolution_jpeg, risk_coverage
from lungcnn.edge.decode import read_grayscale


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

