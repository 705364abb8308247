"""The load benchmark, on a tiny budget: it starts a real server, reports every level and
holds the server to its promise (no failure up to the capacity, only 503s above it)."""

from __future__ import annotations

import json

from lungcnn.benchmarks import serve_load


def test_small_load_run_writes_both_reports(tmp_path):
    out = tmp_path / "serve_load"
    code = serve_load.main(["--clients", "1,4", "--requests", "12", "--queue-limit", "1",
                            "--busy-backoff-ms", "10", "--out", str(out)])
    report = json.loads(out.with_suffix(".json").read_text())
    assert code == 0, report
    first, second = report["levels"]
    assert first["ok"] == first["requests"] == 12 and first["busy_503"] == 0
    assert second["requests"] == 12 and second["errors"] == 0
    assert all(level["expectation_met"] for level in report["levels"])
    assert first["server_peak_rss_mib"] > 0
    text = out.with_suffix(".md").read_text()
    assert "python -m lungcnn.benchmarks.serve_load --clients 1,4" in text
