"""The Raspberry Pi check's pure parts: apt sources, fake cpuinfo and the output comparison.
(The emulated run itself is `bash benchmarks/pi/check.sh`, run by .ci/run.)"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

PI_CHECK = Path(__file__).resolve().parents[2] / "benchmarks" / "pi" / "pi_check.py"


@pytest.fixture(scope="module")
def pi_check():
    sys.path.insert(0, str(PI_CHECK.parent))  # its helper modules, as when run as a script
    spec = importlib.util.spec_from_file_location("pi_check", PI_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lines(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


RECORD = {"file": "a.png", "label": "Covid", "probabilities": {"Covid": 0.98, "Normal": 0.02},
          "flag": "ok", "stable_confidence": 0.9}


def test_identical_outputs_pass(pi_check, tmp_path):
    host = _lines(tmp_path / "host.jsonl", [RECORD])
    summary = pi_check.compare_runs(host, host, 0.0)
    assert summary.startswith("1 records identical")


def test_a_changed_probability_fails_for_quantized_models(pi_check, tmp_path):
    host = _lines(tmp_path / "host.jsonl", [RECORD])
    changed = dict(RECORD, probabilities={"Covid": 0.97, "Normal": 0.02})
    emulated = _lines(tmp_path / "emulated.jsonl", [changed])
    with pytest.raises(pi_check.CheckError, match="probabilities.Covid"):
        pi_check.compare_runs(host, emulated, 0.0)


def test_a_changed_flag_fails(pi_check, tmp_path):
    host = _lines(tmp_path / "host.jsonl", [RECORD])
    emulated = _lines(tmp_path / "emulated.jsonl", [dict(RECORD, flag="uncertain")])
    with pytest.raises(pi_check.CheckError, match="flag"):
        pi_check.compare_runs(host, emulated, 0.0)


def test_stable_confidence_may_move_within_its_tolerance_only(pi_check, tmp_path):
    host = _lines(tmp_path / "host.jsonl", [RECORD])
    close = _lines(tmp_path / "close.jsonl", [dict(RECORD, stable_confidence=0.905)])
    far = _lines(tmp_path / "far.jsonl", [dict(RECORD, stable_confidence=0.95)])
    assert "stable_confidence within 0.01 (max 5.0e-03)" in pi_check.compare_runs(host, close, 0.0)
    with pytest.raises(pi_check.CheckError, match="stable_confidence"):
        pi_check.compare_runs(host, far, 0.0)


def test_an_ok_uncertain_flip_at_the_confidence_threshold_is_tolerated_and_counted(pi_check,
                                                                                  tmp_path):
    host = _lines(tmp_path / "host.jsonl", [dict(RECORD, stable_confidence=0.6611)])
    below = dict(RECORD, flag="uncertain", reason="low", stable_confidence=0.6589)
    summary = pi_check.compare_runs(host, _lines(tmp_path / "below.jsonl", [below]), 0.0)
    assert "1 flag(s) ok/uncertain at the confidence threshold" in summary
    backwards = dict(RECORD, flag="uncertain", stable_confidence=0.6650)  # higher, yet uncertain
    with pytest.raises(pi_check.CheckError, match="flag"):
        pi_check.compare_runs(host, _lines(tmp_path / "backwards.jsonl", [backwards]), 0.0)
    other = dict(RECORD, flag="out_of_distribution", stable_confidence=0.6589)
    with pytest.raises(pi_check.CheckError, match="flag"):
        pi_check.compare_runs(host, _lines(tmp_path / "other.jsonl", [other]), 0.0)


def test_reasons_match_in_words_their_numbers_are_the_tolerated_fields(pi_check, tmp_path):
    record = dict(RECORD, flag="uncertain", stable_confidence=0.631,
                  reason="low calibrated confidence (confidence over variants 0.63 < 0.66)")
    host = _lines(tmp_path / "host.jsonl", [record])
    moved = dict(record, stable_confidence=0.626,
                 reason="low calibrated confidence (confidence over variants 0.62 < 0.66)")
    assert pi_check.compare_runs(host, _lines(tmp_path / "moved.jsonl", [moved]), 0.0)
    reworded = dict(moved, reason="unstable (confidence over variants 0.62 < 0.66)")
    with pytest.raises(pi_check.CheckError, match="reason"):
        pi_check.compare_runs(host, _lines(tmp_path / "reworded.jsonl", [reworded]), 0.0)


@pytest.mark.parametrize(("core", "part"), [("cortex-a72", "0xd08"), ("cortex-a76", "0xd0b")])
def test_cpuinfo_names_the_pi_core(pi_check, core, part):
    text = pi_check.cpuinfo_text(core)
    assert "CPU implementer\t: 0x41" in text  # Arm Ltd.
    parts = {line.split(":")[1].strip() for line in text.splitlines() if line.startswith("CPU part")}
    assert parts == {part}
