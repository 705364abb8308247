"""Leave-one-source-out figures on hand-made held-out records."""

from __future__ import annotations

import pytest

from lungcnn.benchmarks.loso_report import (
    MAX_RIGHT_FLAGGED,
    Rule,
    choose_rule,
    flags_under,
    fold_summary,
    nested_trust,
)

GATE = "unlike the training X-rays: large black areas"
DISTANCE = "unlike the training X-rays to the model itself: its features are far"


def record(label, predicted, *, flag="ok", reason="", stable=0.9, distance=1.0, covered=True):
    return {"file": "x.png", "label": label, "age_group": "adult", "covered": covered,
            "predicted": predicted, "status": "ok", "flag": flag, "reason": reason,
            "stable_confidence": stable, "feature_distance": distance}


def fold(records, threshold=10.0):
    return {"records": records, "thresholds": {"min_confidence": 0.5,
                                               "feature_distance": threshold}}


def test_fold_summary_splits_covered_and_open_set():
    records = [record("Covid", "Covid"), record("Covid", "Normal", flag="uncertain"),
               record("Normal", "Covid", covered=False),
               record("Normal", "Covid", covered=False, flag="out_of_distribution", reason=GATE),
               {**record("Covid", None), "status": "error"}]
    summary = fold_summary(fold(records))
    assert summary["n"] == 4 and summary["failed"] == 1
    assert summary["covered"]["accuracy"] == 0.5 and summary["covered"]["wrong_flagged"] == 1.0
    assert summary["open_set"]["n"] == 2 and summary["open_set"]["wrong_flagged"] == 0.5
    assert summary["all"]["accepted_accuracy"] == 0.5
    assert summary["by_class"]["Normal/adult"]["predicted"] == {"Covid": 2}


def test_rule_recomputes_flags_relative_to_the_fold_threshold():
    records = [record("Covid", "Covid", distance=12.0),
               record("Covid", "Normal", distance=25.0),
               record("Covid", "Normal", stable=0.3),
               record("Covid", "Normal", flag="out_of_distribution", reason=GATE),
               record("Covid", "Covid", flag="out_of_distribution", reason=DISTANCE,
                      distance=15.0)]
    right, flagged = flags_under(Rule(0.9, 0.2), fold(records, threshold=20.0))
    assert right.tolist() == [True, False, False, False, True]
    # 15 < 0.9 x 20: not flagged; stable 0.3 < the fold's fitted 0.5, which a rule keeps.
    assert flagged.tolist() == [False, True, True, True, False]


def test_chosen_rule_respects_the_right_flag_budget_and_nesting():
    right = [record("Covid", "Covid", stable=0.6 + 0.01 * i, distance=0.4 * i)
             for i in range(20)]
    wrong = [record("Covid", "Normal", stable=0.55, distance=30.0) for _ in range(5)]
    folds = {"a": fold(right + wrong), "b": fold(right[::2] + wrong, threshold=12.0)}
    rule = choose_rule(list(folds.values()))
    for each in folds.values():
        flags_right, flagged = flags_under(rule, each)
        assert flagged[~flags_right].all()
        assert flagged[flags_right].mean() <= MAX_RIGHT_FLAGGED
    nested = nested_trust(folds)
    assert set(nested["per_fold"]) == {"a", "b"}
    assert nested["pooled"]["n"] == 40 and nested["pooled"]["wrong_flagged"] == pytest.approx(1.0)


def test_a_rule_keeps_the_lung_field_flags():
    lungs = record("Covid", "Normal", flag="out_of_distribution",
                   reason="no plausible lung fields (too small): classified on the whole scan")
    _, flagged = flags_under(Rule(1.0, 0.0), fold([lungs, record("Covid", "Covid")]))
    assert flagged.tolist() == [True, False]
