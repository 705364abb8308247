"""edge-classify --heatmap: one overlay PNG per classified scan."""

from __future__ import annotations

import json

from PIL import Image
from typer.testing import CliRunner

from lungcnn.edge import cli


def run(*args):
    return CliRunner().invoke(cli.app, [str(a) for a in args])


def test_heatmap_option_writes_one_png_per_scan(tiny_tflite_models, committed_scans, tmp_path):
    out = tmp_path / "heatmaps"
    scans = committed_scans[:2]
    result = run("--model", tiny_tflite_models["int8"], "--json", "--heatmap", out, *scans)
    assert result.exit_code == cli.EXIT_OK, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok"]
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{scan.stem}.heatmap.png" for scan in scans)
    with Image.open(out / written[0]) as image:
        assert image.mode == "RGB" and "Disclaimer" in image.text


def test_heatmap_into_a_file_is_a_usage_error(tiny_tflite_models, committed_scans, tmp_path):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    model = tiny_tflite_models["int8"]
    result = run("--model", model, "--heatmap", not_a_folder, committed_scans[0])
    assert result.exit_code == cli.EXIT_USAGE
    assert result.stderr.startswith("edge-classify: error: ") and "not a folder" in result.stderr


def test_help_states_the_heatmap_cost():
    result = run("--help")
    assert "--heatmap" in result.output and "model runs per scan" in result.output


def test_json_lines_carry_the_flag_and_its_reason(tiny_tflite_models, committed_scans):
    result = run("--model", tiny_tflite_models["int8"], "--json", committed_scans[0])
    assert result.exit_code == cli.EXIT_OK, result.output
    record = json.loads(result.stdout.splitlines()[0])
    assert record["flag"] in ("ok", "uncertain", "out_of_distribution")
    assert record["reason"] and 0 <= record["confidence"] <= 1


def test_table_shows_the_flag_and_lists_flagged_scans_with_reasons(
    calibrated_int8, committed_scans, tmp_path
):
    blank = tmp_path / "blank.png"
    Image.new("L", (256, 256), 128).save(blank)
    result = run("--model", calibrated_int8, committed_scans[0], blank)
    assert result.exit_code == cli.EXIT_OK, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split()[:4] == ["file", "label", "confidence", "flag"]
    blank_row = next(row for row in rows if "blank.png" in row)
    assert blank_row.split()[3] == "out_of_distribution"
    assert "blank.png: out_of_distribution: " in result.stdout
    assert "flagged, do not rely on their labels" in result.stdout
    assert "Not a medical device" in result.stdout


def test_a_damaged_trust_section_is_a_model_error_not_a_traceback(
    calibrated_int8, committed_scans, tmp_path
):
    model = tmp_path / calibrated_int8.name
    model.write_bytes(calibrated_int8.read_bytes())
    manifest = json.loads(calibrated_int8.with_suffix(".json").read_text())
    manifest["calibration"]["temperature"] = 0
    model.with_suffix(".json").write_text(json.dumps(manifest))
    result = run("--model", model, committed_scans[0])
    assert result.exit_code == cli.EXIT_USAGE
    assert "temperature 0 is not > 0" in result.stderr and "Traceback" not in result.output
