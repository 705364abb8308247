"""`lungcnn data check`: findings on the vendored data and documented exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lungcnn.trainer.datacheck import (
    EXIT_LAYOUT,
    EXIT_READABLE,
    EXIT_UNREADABLE,
    data_app,
    format_report,
)


def run(*args):
    return CliRunner().invoke(data_app, ["check", *map(str, args)])


@pytest.fixture(scope="module")
def vendored_report(dataset_dir) -> dict:
    result = run(dataset_dir, "--json")
    assert result.exit_code == EXIT_READABLE, result.output
    return json.loads(result.stdout)


def test_vendored_data_json_report(vendored_report, sha256_duplicate_groups):
    report = vendored_report
    assert report["counts"]["train"] == {
        "Covid": 111,
        "Normal": 70,
        "Viral Pneumonia": 70,
        "total": 251,
    }
    assert report["counts"]["test"]["total"] == 66 and report["unreadable"] == []
    exact = [d for d in report["duplicates"] if d["kind"] == "exact"]
    assert sorted(sorted((d["first"], d["second"])) for d in exact) == sorted(
        sorted(group) for group in sha256_duplicate_groups
    )
    assert sum(d["scope"] == "train-test" for d in exact) == 6
    assert sum(d["scope"] == "within test" for d in exact) == 1
    assert sum(d["scope"] == "within train" for d in exact) == 3
    near = {(d["first"], d["second"]) for d in report["duplicates"] if d["kind"] == "near"}
    assert ("test/Covid/0112.jpg", "train/Covid/090.jpeg") in near
    assert "test/Covid/COVID-00003b.jpg" in report["leaked_test_files"]
    assert report["leak_free_test_files"] == 66 - len(report["leaked_test_files"])


def test_readable_report_names_the_files(vendored_report):
    text = format_report(vendored_report)
    assert "test/Covid/COVID-00003b.jpg == train/Covid/COVID-00003b.jpg" in text
    assert "train/Normal/093.jpeg == train/Normal/094.jpeg" in text
    assert "test/Covid/0112.jpg ~= train/Covid/090.jpeg" in text
    assert "Unreadable files: none" in text


def test_unreadable_file_exits_1_and_is_named(corrupt_dataset):
    result = run(corrupt_dataset)
    assert result.exit_code == EXIT_UNREADABLE
    assert "train/Normal/broken.jpeg: corrupt or truncated image" in result.stdout


def test_missing_or_misshapen_folder_exits_2(tmp_path):
    missing = run(tmp_path / "nowhere")
    assert missing.exit_code == EXIT_LAYOUT and "no such folder" in missing.output
    (tmp_path / "train" / "Cats").mkdir(parents=True)
    misshapen = run(tmp_path)
    assert misshapen.exit_code == EXIT_LAYOUT and "unknown: Cats" in misshapen.output
