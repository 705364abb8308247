"""The shortcut probe on features that do and do not carry the source."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from lungcnn.benchmarks.probe import probe_scores  # noqa: E402
from lungcnn.trainer.dataset import Sample  # noqa: E402


def samples():
    rows = []
    for source, label, age in (("a", 0, "adult"), ("b", 0, "adult"), ("c", 1, "pediatric"),
                               ("d", 1, "adult")):
        rows += [Sample(f"{source}/{i}", label, source=source, age_group=age) for i in range(20)]
    return rows


def test_probe_finds_a_source_cue_and_not_noise():
    scans = samples()
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(len(scans), 8))
    cue = noise.copy()
    for row, scan in enumerate(scans):  # one feature per source lights up
        cue[row, "abcd".index(scan.source)] += 6.0
    leaky, blind = probe_scores(cue, scans), probe_scores(noise, scans)
    assert leaky["source (all scans)"]["balanced_accuracy"] > 0.9
    assert blind["source (all scans)"]["balanced_accuracy"] < 0.5
    assert leaky["source (all scans)"]["chance"] == 0.25
    assert leaky["age group (Normal scans)"]["balanced_accuracy"] > 0.9
    assert leaky["source (Covid scans)"]["groups"] == {"a": 20, "b": 20}
