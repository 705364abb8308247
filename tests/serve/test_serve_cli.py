"""`edge-classify serve` on the command line: dispatch, help, one-line errors and exit
codes, and that `edge-classify ./serve` still classifies a scan named serve."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from lungcnn.edge.cli import main
from lungcnn.edge.report import NOTICE
from lungcnn.edge.serve.cli import EXIT_USAGE


def run_main(arguments: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(arguments)
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


def test_serve_help_via_python_dash_m():
    completed = subprocess.run([sys.executable, "-m", "lungcnn.edge", "serve", "--help"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    for text in ("--host", "--token-file", "--queue-limit", "127.0.0.1", "Exit codes"):
        assert text in completed.stdout
    assert " ".join(NOTICE.split()[:4]) in completed.stdout


def test_classify_help_points_to_serve(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0 and "edge-classify serve --help" in out and "./serve" in out


def test_missing_model_is_a_one_line_usage_error(tmp_path, capsys):
    missing = tmp_path / "missing.tflite"
    code, _, err = run_main(["serve", "--model", str(missing)], capsys)
    assert code == EXIT_USAGE
    assert err.strip() == f"edge-classify serve: error: {missing}: model file not found"


@pytest.mark.parametrize("content, mode, reason", [
    ("secret\n", 0o644, "readable by other users; chmod 600 it"),
    ("   \n", 0o600, "must hold one token without spaces"),
])
def test_unsafe_or_empty_token_file_is_refused(tmp_path, capsys, content, mode, reason):
    token_file = tmp_path / "token"
    token_file.write_text(content)
    token_file.chmod(mode)
    code, _, err = run_main(["serve", "--token-file", str(token_file)], capsys)
    assert code == EXIT_USAGE
    assert err.strip() == f"edge-classify serve: error: --token-file {token_file}: {reason}"


def test_bad_option_is_usage_error(capsys):
    code, _, _ = run_main(["serve", "--port", "0"], capsys)
    assert code == EXIT_USAGE


def test_a_scan_named_serve_is_passed_as_dot_slash(int8_model, scan_files, tmp_path,
                                                   monkeypatch, capsys):
    shutil.copyfile(scan_files[0], tmp_path / "serve")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(["--json", "--model", str(int8_model), "./serve"], capsys)
    assert code == 0, err
    assert json.loads(out)["status"] == "ok"


def test_missing_serve_extra_is_a_one_line_usage_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if `lungcnn[serve]` were not installed
    code, _, err = run_main(["serve"], capsys)
    assert code == EXIT_USAGE
    assert err.strip() == ("edge-classify serve: error: the server needs the serve extra: "
                           "pip install 'lungcnn[serve]' (uvicorn is missing)")


def test_the_server_needs_no_tensorflow():
    code = ("import sys, lungcnn.edge.serve.app, lungcnn.edge.serve.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
