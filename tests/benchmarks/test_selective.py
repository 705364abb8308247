"""Selective prediction and conformal sets on hand-made held-out records."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from lungcnn.benchmarks.conformal import conformal_report, min_probability
from lungcnn.benchmarks.selective import (
    MEMBERS,
    WITH_MEMBERS,
    choose_threshold,
    distance_ratio,
    helps,
    risk_coverage,
    selective_report,
)
from lungcnn.cli import app

GATE = "unlike the training X-rays: large black areas"


def record(label, predicted, *, stable=0.9, distance=1.0, flag="ok", reason="",
           covered=True, probabilities=None, nearest=None):
    names = ("Covid", "Normal", "Viral Pneumonia")
    if probabilities is None:
        probabilities = [0.9 if n == predicted else 0.05 for n in names]
    return {"file": "x.png", "label": label, "age_group": "adult", "covered": covered,
            "predicted": predicted, "status": "ok", "flag": flag, "reason": reason,
            "confidence": stable, "stable_confidence": stable, "feature_distance": distance,
            "probabilities": dict(zip(names, probabilities)),
            "nearest_class": nearest or predicted}


def fold(records):
    return {"records": records, "trained_on": ["other"],
            "thresholds": {"min_confidence": 0.5, "feature_distance": 10.0, "temperature": 1.0}}


def test_risk_coverage_of_a_perfect_and_a_reversed_ranking():
    right = np.array([True, True, False, False])
    perfect = risk_coverage(right, np.array([4.0, 3.0, 2.0, 1.0]))
    reversed_ = risk_coverage(right, np.array([1.0, 2.0, 3.0, 4.0]))
    # Perfect: risks 0, 0, 1/3, 1/2; reversed: 1, 1, 2/3, 1/2.
    assert perfect["aurc"] == pytest.approx((0 + 0 + 1 / 3 + 1 / 2) / 4)
    assert perfect["aurc"] == pytest.approx(perfect["best_aurc"])
    assert reversed_["aurc"] == pytest.approx((1 + 1 + 2 / 3 + 1 / 2) / 4)
    assert reversed_["curve"][-1] == {"coverage": 1.0, "risk": 0.5}


def test_distance_ratio_of_unrecorded_distances():
    far = record("Covid", "Viral Pneumonia", distance=None, flag="out_of_distribution",
                 reason="unlike the training X-rays to the model itself: ...")
    gated = record("Covid", "Covid", distance=None, flag="out_of_distribution", reason=GATE)
    assert distance_ratio(far, fold([])) == np.inf  # a class with no training scans
    assert distance_ratio(gated, fold([])) == 0.0  # no features check on this answer
    assert distance_ratio(record("Covid", "Covid", distance=5.0), fold([])) == 0.5


def test_threshold_keeps_the_right_flag_budget():
    right = np.array([True] * 8 + [False] * 2)
    score = np.array([0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.3, 0.4, 0.5])
    threshold = choose_threshold([(right, score, np.zeros(10, dtype=bool),
                                   np.ones(10, dtype=bool))])
    flagged = score < threshold
    assert flagged[~right].all()  # both wrong answers caught
    assert flagged[right].mean() <= 0.25  # with at most a quarter of right ones flagged


def folds_with_a_signal():
    """Wrong answers are confident but have far features; one gate failure."""
    def one(offset):
        right = [record("Covid", "Covid", stable=0.8 + 0.01 * i, distance=2.0 + i)
                 for i in range(12)]
        wrong = [record("Normal", "Covid", stable=0.95 + offset, distance=30.0,
                        probabilities=[0.5, 0.45, 0.05], nearest="Normal" if i else None)
                 for i in range(4)]
        gate = [record("Covid", "Normal", flag="out_of_distribution", reason=GATE)]
        return fold(right + wrong + gate)
    return {"a": one(0.0), "b": one(0.01), "c": one(0.02)}


def test_selective_report_measures_every_rule_per_fold_and_class():
    report = selective_report({"folds": folds_with_a_signal()})
    assert set(report["not_measured"]) == {MEMBERS, WITH_MEMBERS}  # no ensemble members
    baseline = report["rules"]["today (baseline)"]
    assert set(baseline["per_fold"]) == {"a", "b", "c"}
    assert set(baseline["by_class"]) == {"Covid/adult", "Normal/adult"}
    assert baseline["pooled"]["wrong_flagged"] == pytest.approx(1 / 5)  # only the gate
    distance = report["rules"]["feature distance"]["pooled"]
    assert distance["wrong_flagged"] == 1.0 and distance["right_flagged"] == 0.0
    assert distance["aurc"] == pytest.approx(distance["best_aurc"])
    assert distance["aurc"] < baseline["pooled"]["aurc"]
    nearest = report["rules"]["nearest class differs"]["pooled"]
    assert nearest["wrong_flagged"] == pytest.approx(4 / 5)  # three of four, and the gate
    assert nearest["right_flagged"] == 0.0
    assert helps(report, "nearest class differs", baseline="today (baseline)")
    assert not helps(report, "nearest class differs")  # the nested thresholds flag all
    assert not helps(report, "not a rule")


def test_records_without_probabilities_skip_the_conformal_rule():
    folds = folds_with_a_signal()
    for each in folds.values():
        for r in each["records"]:
            del r["probabilities"]
    report = selective_report({"folds": folds})
    assert "conformal set" in report["not_measured"]
    assert "conformal set" not in report["rules"]


def test_conformal_level_is_the_corrected_quantile_of_covered_scans():
    records = [record("Covid", "Covid", probabilities=[p, 1 - p, 0.0])
               for p in np.linspace(0.1, 1.0, 10)]
    records.append(record("Normal", "Covid", covered=False, probabilities=[1.0, 0.0, 0.0]))
    # Scores 1 - p: 0.9 ... 0.0; ceil(11 x 0.9) = 10th smallest = 0.9 -> min probability 0.1.
    # (Up to the probability floor the temperature clips at.)
    assert min_probability([fold(records)], 0.9) == pytest.approx(0.1, abs=1e-3)
    assert min_probability([fold(records[:5])], 0.9) == 0.0  # too few scans: every label
    assert min_probability([fold(records[-1:])], 0.9) == 0.0  # no covered scan at all


def test_conformal_report_covers_each_fold_from_the_others():
    report = conformal_report(folds_with_a_signal())
    assert set(report["per_fold"]) == {"a", "b", "c"}
    for block in report["per_fold"].values():
        assert block["coverage_covered"] >= 0.9
        assert block["mean_set_size"] >= 1.0
    # The wrong answers' true label (0.45) must enter their sets for 90% coverage.
    assert report["min_probability_all_folds"] <= 0.45


def test_loso_report_command_rewrites_a_results_file(tmp_path):
    results = tmp_path / "loso-x.json"
    results.write_text(json.dumps({"arch": "tiny", "command": "lungcnn loso ...",
                                   "folds": folds_with_a_signal()}))
    outcome = CliRunner().invoke(app, ["loso-report", str(results)])
    assert outcome.exit_code == 0, outcome.output
    written = json.loads(results.read_text())
    assert written["selective"]["rules"] and written["conformal"]["per_fold"]
    assert (tmp_path / "loso-x_risk_coverage.png").stat().st_size > 0
    assert "Not a medical device" in (tmp_path / "loso-x.md").read_text()


def test_loso_report_command_refuses_a_file_that_is_not_a_result(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    outcome = CliRunner().invoke(app, ["loso-report", str(bad)])
    assert outcome.exit_code == 2
    assert "not a readable lungcnn loso results file" in outcome.output
