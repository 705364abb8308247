"""`lungcnn bench` end to end on the tiny fixture run (quick mode, few calls)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from lungcnn.benchmarks.cli import app
from lungcnn.benchmarks.config import QUICK_HEATMAP_CALLS, QUICK_TRUST_PROXIES
from lungcnn.convert.quantize import QUANTIZATIONS
from lungcnn.benchmarks.timing import distribution_ms, time_calls

VARIANTS = ("keras", *QUANTIZATIONS)


def _variants(payload):
    return [variant for run in payload["runs"] for variant in run["variants"]]


def test_bench_exits_zero_and_writes_json_markdown_plots(bench_output):
    result, out, payload = bench_output
    assert result.exit_code == 0, result.output
    assert "Not a medical device" in result.output
    for name in ("smoke.json", "smoke.md", "smoke_tradeoff.png", "smoke_latency.png"):
        assert (out / name).stat().st_size > 0


def test_bench_converts_missing_variants(bench_output, bench_run_dir):
    assert (bench_run_dir / "model_dynamic.tflite").is_file()
    assert (bench_run_dir / "model_dynamic.json").is_file()
    assert [v["variant"] for v in _variants(bench_output[2])] == list(VARIANTS)


def test_bench_json_records_machine_versions_and_command(bench_output):
    payload = bench_output[2]
    assert payload["command"].startswith("lungcnn bench --run ")
    assert "--quick" in payload["command"] and "--timed-calls 5" in payload["command"]
    assert payload["machine"]["cores"] >= 1 and payload["machine"]["cpu_model"]
    for library in ("numpy", "keras", "ai-edge-litert"):
        assert payload["versions"][library]
    assert payload["date"] and payload["elapsed_s"] > 0 and payload["cpu_s"] > 0


def test_bench_quality_values_are_probabilities(bench_output):
    payload = bench_output[2]
    run = payload["runs"][0]
    assert run["test_scans"] == 6  # quick mode: two scans per class of the tiny split
    for variant in _variants(payload):
        test = variant["quality"]["test"]
        assert test["n"] == run["test_scans"]
        for value in (test["accuracy"], test["agreement_with_keras"], *test["f1"].values()):
            assert 0.0 <= value <= 1.0
        low, high = test["accuracy_ci95"]
        assert 0.0 <= low <= test["accuracy"] <= high <= 1.0
        assert variant["quality"]["test_dedup"]["n"] == run["test_dedup_scans"]
    keras = _variants(payload)[0]
    assert keras["quality"]["test"]["agreement_with_keras"] == 1.0


def test_bench_speed_percentiles_are_ordered(bench_output):
    payload = bench_output[2]
    threads = [str(t) for t in payload["config"]["threads"]]
    for variant in _variants(payload):
        assert set(variant["speed"]) == set(threads)
        for timings in variant["speed"].values():
            for kind in ("invoke_ms", "end_to_end_ms"):
                dist = timings[kind]
                assert dist["n"] == 5
                assert 0 < dist["min"] <= dist["p50"] <= dist["p90"] <= dist["p99"] <= dist["max"]
        for ratios in variant["vs_reference_float32"].values():
            assert all(ratio > 0 for ratio in ratios.values())
    assert "batched_per_image_ms" in _variants(payload)[0]["speed"][threads[-1]]


def test_bench_cost_and_litert_path_without_tensorflow(bench_output):
    for variant in _variants(bench_output[2]):
        cost = variant["cost"]
        assert cost["file_bytes"] > 0 and cost["peak_rss_mb"] > 0 and cost["load_s"] > 0
        assert cost["tensorflow_loaded"] is (variant["runtime"] == "keras")


def test_bench_robustness_shares(bench_output):
    for variant in _variants(bench_output[2]):
        shares = variant["robustness"]
        assert shares and all(0.0 <= share <= 1.0 for share in shares.values())


def test_bench_calibrates_a_run_without_trust_thresholds(bench_output, bench_run_dir):
    for path in bench_run_dir.glob("model_*.json"):
        assert {"calibration", "trust"} <= json.loads(path.read_text()).keys(), path.name


def test_bench_trust_section_of_each_tflite_variant(bench_output):
    payload = bench_output[2]
    run = payload["runs"][0]
    for variant in _variants(payload):
        trust = variant["trust"]
        if variant["runtime"] == "keras":
            assert trust is None
            continue
        assert set(trust["shift_proxies"]) == set(QUICK_TRUST_PROXIES)
        for summary in (trust["test"], *trust["shift_proxies"].values()):
            assert summary["n"] == run["test_scans"]
            _assert_sane_summary(summary)
        assert trust["test_dedup"]["n"] == run["test_dedup_scans"]
        assert trust["test"]["risk_coverage"][0]["accuracy"] == trust["test"]["accuracy"]
        non_xray = trust["non_xray"]
        assert non_xray["n"] >= 50
        assert 0.0 <= non_xray["refused_rate"] <= non_xray["flagged_rate"] <= 1.0
        assert 0.0 <= trust["ece_before"] <= 1.0 and 0.0 <= trust["ece_after"] <= 1.0
        assert trust["thresholds"]["temperature"] > 0
        heatmap = trust["heatmap_ms_one_thread"]
        assert heatmap["n"] == QUICK_HEATMAP_CALLS and heatmap["p50"] > 0


def _assert_sane_summary(summary: dict) -> None:
    for key in ("accuracy", "abstain_rate", "out_of_distribution_rate", "accepted_accuracy",
                "wrong_flagged"):
        assert summary[key] is None or 0.0 <= summary[key] <= 1.0, key
    assert 0 <= summary["n_wrong_flagged"] <= summary["n_wrong"] <= summary["n"]
    coverages = [row["coverage"] for row in summary["risk_coverage"]]
    assert coverages[0] == 1.0 and coverages == sorted(coverages, reverse=True)
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in summary["risk_coverage"])
    assert 0.0 <= summary["aurc"] <= 1.0


def test_bench_markdown_has_the_trust_section(bench_output):
    _, out, payload = bench_output
    text = (out / "smoke.md").read_text()
    trust = text[text.index("## Trust"):]
    assert "train/validation files only" in trust and "| 100% | 95% |" in trust and "AURC" in trust
    for proxy in QUICK_TRUST_PROXIES:
        assert f"| {proxy} |" in trust
    for variant in _variants(payload):
        assert (f"| {variant['variant']} |" in trust) is (variant["runtime"] != "keras")


def test_bench_failed_calibration_is_a_one_line_usage_error(bench_output, bench_run_dir, tmp_path):
    run_dir = tmp_path / "uncalibrated"
    shutil.copytree(bench_run_dir, run_dir)
    _edit_json(run_dir / "model_int8.json", lambda manifest: manifest.pop("trust"))
    _edit_json(run_dir / "manifest.json",
               lambda manifest: manifest.update(data_dir=str(tmp_path / "missing")))
    result = CliRunner().invoke(app, ["--run", str(run_dir), "--out", str(tmp_path / "out"), "--quick"])
    assert result.exit_code == 2
    assert "calibration failed" in result.output and "Traceback" not in result.output


def _edit_json(path, edit) -> None:
    payload = json.loads(path.read_text())
    edit(payload)
    path.write_text(json.dumps(payload))


def test_bench_markdown_names_its_command(bench_output):
    _, out, payload = bench_output
    text = (out / "smoke.md").read_text()
    assert payload["command"] in text
    assert "Not a medical device" in text
    for variant in VARIANTS:
        assert f"| {variant} |" in text


def test_bench_missing_run_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["--run", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "no model.keras" in result.output


def test_bench_rejects_zero_timed_calls(tmp_path):
    result = CliRunner().invoke(app, ["--run", str(tmp_path), "--timed-calls", "0"])
    assert result.exit_code == 2


def test_lungcnn_bench_is_registered_in_the_workbench():
    from lungcnn.cli import app as workbench

    result = CliRunner().invoke(workbench, ["bench", "--help"])
    assert result.exit_code == 0 and "--timed-calls" in result.output


def test_python_dash_m_benchmarks_has_help():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "--timed-calls" in result.output


def test_time_calls_warms_up_then_times_each_call():
    seen = []
    samples = time_calls(seen.append, calls=4, warmup=2)
    assert seen == [0, 1, 0, 1, 2, 3]
    assert samples.shape == (4,) and np.all(samples >= 0)


def test_distribution_is_in_milliseconds_per_item():
    dist = distribution_ms(np.array([0.001, 0.002, 0.003, 0.004]), per=2)
    assert dist["min"] == pytest.approx(0.5) and dist["max"] == pytest.approx(2.0)
    assert dist["p50"] == pytest.approx(1.25)
    assert dist["p50"] <= dist["p90"] <= dist["p99"] and dist["n"] == 4


def test_bench_corrupt_model_is_a_one_line_usage_error(bench_output, bench_run_dir, tmp_path):
    run_dir = tmp_path / "corrupt"
    shutil.copytree(bench_run_dir, run_dir)
    (run_dir / "model_float32.tflite").write_bytes(b"not a model")
    result = CliRunner().invoke(app, ["--run", str(run_dir), "--out", str(tmp_path / "out"), "--quick"])
    assert result.exit_code == 2
    assert "model_float32.tflite" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "latest.json").exists()


def test_bench_unwritable_out_is_a_one_line_usage_error(tmp_path, monkeypatch):
    import lungcnn.benchmarks.bench
    from lungcnn.benchmarks.bench import Measured

    monkeypatch.setattr(lungcnn.benchmarks.bench, "run_benchmark", lambda *a, **k: Measured({}, {}))
    out = tmp_path / "a_file"
    out.write_text("not a folder")
    result = CliRunner().invoke(app, ["--run", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 2
    assert "cannot write the results" in result.output and "Traceback" not in result.output
