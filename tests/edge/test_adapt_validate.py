"""`edge-classify validate`: the site acceptance report's figures (edge.validate), its files
(Markdown, JSON, PNG plots with the notice) and its exit codes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lungcnn.edge.errors import EXIT_FAILED, EXIT_USAGE, NOTICE
from lungcnn.edge.site_cli import app
from lungcnn.edge.validate import Outcome, risk_coverage, site_report, verdict, wilson

NAMES = ("Covid", "Normal", "Viral Pneumonia")


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_wilson_intervals_match_known_values():
    half = wilson(5, 10)
    assert half["value"] == 0.5
    assert half["low"] == pytest.approx(0.2366, abs=1e-4)
    assert half["high"] == pytest.approx(0.7634, abs=1e-4)
    none = wilson(0, 10)
    assert none["low"] == 0.0 and none["high"] == pytest.approx(0.2775, abs=1e-4)
    assert wilson(0, 0)["value"] is None


def test_the_report_counts_what_the_device_answered():
    outcomes = ([Outcome(1, 1, 0.9, "ok")] * 6 + [Outcome(1, 0, 0.6, "uncertain")] * 2
                + [Outcome(0, 0, 0.8, "ok")] * 2)
    report = site_report(outcomes, NAMES)
    assert report["accuracy"]["value"] == pytest.approx(0.8)
    assert report["confusion"]["matrix"] == [[2, 0, 0], [2, 6, 0], [0, 0, 0]]
    assert report["per_class"]["Normal"]["recall"]["value"] == pytest.approx(0.75)
    assert report["per_class"]["Covid"]["precision"]["value"] == pytest.approx(0.5)
    assert report["per_class"]["Viral Pneumonia"]["scans"] == 0
    assert report["flags"]["uncertain"] == pytest.approx(0.2)
    assert report["accepted"]["value"] == 1.0 and report["accepted"]["n"] == 8
    # ECE: bin 0.9 (6 right), bin 0.8 (2 right), bin 0.6 (2 wrong)
    assert report["calibration"]["ece"] == pytest.approx((6 * 0.1 + 2 * 0.2 + 2 * 0.6) / 10)
    assert report["verdict"]["decision"] == "not fit"
    assert report["notice"] == NOTICE


def test_the_risk_coverage_curve_keeps_the_most_confident_first():
    curve = risk_coverage(np.array([0.9, 0.5, 0.7, 0.6]), np.array([True, False, True, False]))
    assert curve["coverage"] == [0.25, 0.5, 0.75, 1.0]
    assert curve["risk"] == [0.0, 0.0, pytest.approx(1 / 3, abs=1e-4), 0.5]
    assert curve["area"] == pytest.approx((0 + 0 + 1 / 3 + 0.5) / 4)


def _per_class(hits: int, scans: int) -> dict:
    return {"Normal": {"scans": scans, "recall": wilson(hits, scans)},
            "Covid": {"scans": 0, "recall": wilson(0, 0)}}


@pytest.mark.parametrize(("hits", "scans", "decision", "text"), [
    (14, 100, "not fit", "not fit for this site: Normal recall 0.14 (0.09-0.22)"),
    (9, 10, "inconclusive", "inconclusive: too few scans to be sure of Normal recall 0.90"),
    (95, 100, "fit", "fit for this site: Normal recall 0.95 (0.89-0.98)"),
])
def test_the_verdict_says_why_in_plain_language(hits, scans, decision, text):
    result = verdict(_per_class(hits, scans))
    assert result["decision"] == decision and result["text"].startswith(text)
    assert "Covid" not in result["text"]  # a class the site does not have is not judged


def test_validate_writes_the_report_files(adaptable_model, site_dir, tmp_path):
    out = tmp_path / "report"
    result = run("validate", "--data", site_dir, "--out", out, "--model", adaptable_model)
    assert result.exit_code in (0, EXIT_FAILED), result.output  # the verdict decides
    assert NOTICE in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "reliability.png", "report.json", "report.md", "risk_coverage.png"]
    report = json.loads((out / "report.json").read_text())
    assert report["scans"] == 12 and report["unreadable"] == []
    assert sum(map(sum, report["confusion"]["matrix"])) == 12
    assert report["verdict"]["text"] in result.stdout
    assert math.isfinite(report["calibration"]["ece"])
    markdown = (out / "report.md").read_text()
    assert NOTICE in markdown and report["verdict"]["text"] in markdown
    for name in ("reliability.png", "risk_coverage.png"):
        with Image.open(out / name) as image:
            assert image.text["Disclaimer"] == NOTICE


def test_an_unreadable_scan_is_listed_and_the_exit_code_says_so(adaptable_model, site_dir,
                                                                 tmp_path):
    import shutil

    site = tmp_path / "site"
    shutil.copytree(site_dir, site)
    (site / "Normal" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    result = run("validate", "--data", site, "--out", tmp_path / "out", "--model",
                 adaptable_model)
    assert result.exit_code == EXIT_FAILED, result.output
    assert "broken.jpg" in result.stderr and "Traceback" not in result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["scans"] == 12 and len(report["unreadable"]) == 1


@pytest.mark.parametrize(("layout", "fragment"), [
    ({"Pneumothorax/a.png": b"x"}, "'Pneumothorax' is not a class of the model"),
    ({"Normal/a.png": b"not an image"}, "no scan could be read"),
    ({}, "no scans found"),
])
def test_an_unusable_site_is_refused_in_one_line(adaptable_model, tmp_path, layout, fragment):
    site = tmp_path / "site"
    site.mkdir()
    for name, data in layout.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(data)
    result = run("validate", "--data", site, "--out", tmp_path / "out", "--model",
                 adaptable_model)
    assert result.exit_code == EXIT_USAGE, result.output
    assert fragment in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()
