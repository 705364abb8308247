"""Ensemble members trained without pairs of sources (`benchmarks.ensemble`), on hand-made
records: which members vote on which fold, the support rule, labels from the members' mean,
and `lungcnn loso-ensemble` on member runs that already exist (nothing trained)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lungcnn.benchmarks.ensemble import MEMBER_RECORDS, label_accuracy, with_members
from lungcnn.benchmarks.selective import MEMBERS, WITH_MEMBERS, helps, selective_report
from lungcnn.cli import app
from lungcnn.edge.errors import NOTICE

from test_selective import fold, record

NAMES = ("Covid", "Normal", "Viral Pneumonia")


def vote(label, strength=0.8):
    rest = (1 - strength) / 2
    return {"file": None, "status": "ok",
            "probabilities": {n: strength if n == label else rest for n in NAMES}}


def named(records, prefix):
    return [{**r, "file": f"{prefix}/{i}.png"} for i, r in enumerate(records)]


def three_sources():
    """Per source: 12 right answers the members back, 4 confident wrong answers they reject."""
    folds = {}
    for source in ("a", "b", "c"):
        right = [record("Covid", "Covid", stable=0.9) for _ in range(12)]
        wrong = [record("Normal", "Covid", stable=0.95) for _ in range(4)]
        folds[source] = fold(named(right + wrong, source))
    result = {"sources": ["a", "b", "c"], "folds": folds}
    members = {}
    for pair in ("a+b", "a+c", "b+c"):
        members[pair] = {source: [{**vote(r["label"]), "file": r["file"]}
                                  for r in folds[source]["records"]]
                         for source in pair.split("+")}
    return result, members


def test_each_fold_gets_the_votes_of_the_members_that_never_saw_it():
    result, members = three_sources()
    members["a+b"]["a"][0] = {**members["a+b"]["a"][0], "status": "error"}
    annotated = with_members(result, members)
    first = annotated["folds"]["a"]["records"][0]
    assert len(first["member_probabilities"]) == 2  # a+b and a+c, not b+c
    assert first["member_probabilities"][0] is None  # that member could not read the scan
    assert "member_probabilities" not in result["folds"]["a"]["records"][0]  # not changed


def test_support_flags_what_the_members_reject_and_is_kept_when_it_helps():
    result, members = three_sources()
    report = selective_report(with_members(result, members))
    support = report["rules"][MEMBERS]["pooled"]
    assert support["wrong_flagged"] == 1.0 and support["right_flagged"] == 0.0
    assert support["aurc"] == pytest.approx(support["best_aurc"])
    assert helps(report, WITH_MEMBERS)
    assert MEMBERS in selective_report(result)["not_measured"]  # a plain LOSO result


def test_label_from_the_members_mean():
    result, members = three_sources()
    labels = label_accuracy(with_members(result, members))
    assert labels["a"] == {"answer": 0.75, "members": 1.0, "all": 1.0, "n": 16,
                           "support_right": pytest.approx(0.8), "support_wrong": pytest.approx(0.1)}
    assert labels["pooled"]["n"] == 48


def test_loso_ensemble_command_scores_existing_members(tmp_path):
    result, members = three_sources()
    result.update(arch="tiny", recipe={}, data=[])
    loso = tmp_path / "loso.json"
    loso.write_text(json.dumps(result))
    for pair, records in members.items():
        (tmp_path / "runs" / pair).mkdir(parents=True)
        (tmp_path / "runs" / pair / MEMBER_RECORDS).write_text(json.dumps(records))
    completed = CliRunner().invoke(app, ["loso-ensemble", str(loso), "--runs",
                                         str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
                                         "--name", "ens"])
    assert completed.exit_code == 0, completed.output
    written = json.loads((tmp_path / "out" / "ens.json").read_text())
    assert written["selective"]["rules"][WITH_MEMBERS]["pooled"]["wrong_flagged"] == 1.0
    markdown = (tmp_path / "out" / "ens.md").read_text()
    assert "Ensemble support as a trust signal: kept" in markdown
    assert markdown.endswith(NOTICE + "\n")
    assert "| a | 16 | 0.75 | 1.00 | 1.00 | 0.80 | 0.10 |" in markdown


def test_loso_ensemble_command_refuses_an_unreadable_result(tmp_path):
    completed = CliRunner().invoke(app, ["loso-ensemble", str(tmp_path / "missing.json")])
    assert completed.exit_code == 2
    assert "missing.json" in completed.output
