"""edge-classify against a corpus of hostile inputs (tests/edge/hostile_corpus.py, built at
test time), each in its own process with a timeout: the documented exit code, one error line
naming the file, no traceback, no hang. Then the output side: stdout closed, full or gone,
Ctrl-C, heatmaps that cannot be written, folders that cannot be listed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hostile_corpus import CASE_NAMES, DEEP_LEVELS, build_corpus, model_with_a_fifo
from lungcnn.edge import cli, inputs
from lungcnn.edge.errors import printable

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120  # a hang fails the test instead of the run
PREFIX = "edge-classify: error: "


def edge_classify(*args, model: Path, timeout: float = TIMEOUT_S, **options):
    """Run `python -m lungcnn.edge --json --model MODEL -- ARGS` in a fresh process."""
    command = [sys.executable, "-m", "lungcnn.edge", "--json", "--model", str(model), "--",
               *(str(a) for a in args)]
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **options}
    return subprocess.run(command, timeout=timeout, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, **options)


def records_of(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode("ascii").split("\n") if line]


def error_lines(stderr: bytes) -> list[str]:
    text = stderr.decode("utf-8", "replace")
    assert "Traceback" not in text, text
    lines = text.split("\n")[:-1] if text else []
    assert all(line.startswith(PREFIX) and line.isprintable() for line in lines), text
    return lines


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, scan_files):
    cases = build_corpus(tmp_path_factory.mktemp("hostile") / "corpus", scan_files[0])
    return {case.name: case for case in cases}


@pytest.mark.parametrize("name", CASE_NAMES)
def test_hostile_input(name, corpus, int8_model):
    if name not in corpus:
        pytest.skip(f"{name} cannot be made here")
    case = corpus[name]
    completed = edge_classify(case.argument, model=int8_model)
    records, lines = records_of(completed.stdout), error_lines(completed.stderr)
    assert len(records) == case.records
    failed = [r for r in records if r["status"] == "error"]
    assert completed.returncode == (1 if case.reasons else 0), completed.stderr
    assert len(failed) == len(case.reasons) == len(lines)
    for record, line in zip(failed, lines):  # in the same order
        assert line == PREFIX + printable(f"{record['file']}: {record['error']}")
        assert record["label"] is None
    for reason in case.reasons:
        assert sum(reason in record["error"] for record in failed) == 1, reason
    for record in records:
        assert record["status"] == "error" or record["label"] in read_class_names(int8_model)


def read_class_names(model: Path) -> list[str]:
    return json.loads(model.with_suffix(".json").read_text())["class_names"]


def test_the_whole_corpus_in_one_call(corpus, int8_model):
    """One bad input does not stop the batch: every input gets its record and its line."""
    cases = [case for name, case in corpus.items() if name != "symlink-to-fifo"]  # a duplicate
    completed = edge_classify(*(case.argument for case in cases), model=int8_model)
    records, lines = records_of(completed.stdout), error_lines(completed.stderr)
    assert completed.returncode == 1
    assert len(records) == sum(case.records for case in cases)
    assert len(lines) == sum(len(case.reasons) for case in cases)
    assert len(lines) == sum(r["status"] == "error" for r in records)


def test_odd_names_stay_on_one_table_row(corpus, int8_model):
    odd = [corpus[name].argument for name in ("newline-in-name", "escape-in-name",
                                              "tab-and-carriage-return", "unicode-name",
                                              "name-not-utf8")]
    result = CliRunner().invoke(cli.app, ["--model", str(int8_model), *map(str, odd)])
    assert result.exit_code == 0, result.output
    rows = result.stdout.split("\n")
    assert rows[len(odd) + 1] == "" and rows[len(odd) + 2] == f"{len(odd)} classified."
    assert all(row.isprintable() for row in rows)
    assert "new\\nline.jpg" in result.stdout and "esc\\x1b[31mred.jpg" in result.stdout


def test_a_walk_needs_no_recursion(corpus, monkeypatch):
    monkeypatch.setattr(sys, "getrecursionlimit", sys.getrecursionlimit)  # restored after
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(DEEP_LEVELS // 2)
    try:
        items = inputs.folder_items(corpus["folder-300-levels-deep"].argument)
    finally:
        sys.setrecursionlimit(previous)
    assert [item.path.name for item in items] == ["deep.jpg"] and items[0].error is None


# --- output failures -------------------------------------------------------------------


def test_a_full_stdout_is_one_line_exit_2(scan_files, int8_model):
    with open("/dev/full", "wb") as full:
        completed = edge_classify(*scan_files[:2], model=int8_model, stdout=full,
                                  stderr=subprocess.PIPE)
    assert completed.returncode == 2
    assert error_lines(completed.stderr) == [
        PREFIX + "cannot write the results to stdout (No space left on device)"]


def test_a_closed_stdout_is_one_line_exit_2(scan_files, int8_model):
    command = [sys.executable, "-m", "lungcnn.edge", "--model", str(int8_model),
               str(scan_files[0])]
    completed = subprocess.run(command, stdout=None, stderr=subprocess.PIPE, cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=TIMEOUT_S,
                               preexec_fn=lambda: os.close(1))
    assert completed.returncode == 2
    assert error_lines(completed.stderr) == [
        PREFIX + "stdout is closed: nowhere to write the results"]


def test_a_reader_that_goes_away_is_one_line_exit_2(scan_files, int8_model):
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        completed = edge_classify(*scan_files, model=int8_model, stdout=write_end,
                                  stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert completed.returncode == 2
    assert error_lines(completed.stderr) == [
        PREFIX + "cannot write the results to stdout (Broken pipe)"]


def test_a_closed_stderr_keeps_stdout_clean(scan_files, int8_model, tmp_path):
    command = [sys.executable, "-m", "lungcnn.edge", "--json", "--model", str(int8_model),
               str(scan_files[0]), str(tmp_path / "missing.png")]
    completed = subprocess.run(command, stdout=subprocess.PIPE, cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)},
                               timeout=TIMEOUT_S, preexec_fn=lambda: os.close(2))
    assert completed.returncode == 1
    assert [r["status"] for r in records_of(completed.stdout)] == ["ok", "error"]


def test_ctrl_c_leaves_every_written_record_whole(scan_files, int8_model, tmp_path):
    for index in range(300):
        shutil.copy(scan_files[index % len(scan_files)], tmp_path / f"{index:03d}.jpg")
    command = [sys.executable, "-m", "lungcnn.edge", "--json", "--model", str(int8_model),
               str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = process.stdout.readline()  # classification has started
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    rest = process.stdout.read()  # (communicate would skip what readline has buffered)
    stderr = process.stderr.read()
    process.wait(timeout=TIMEOUT_S)
    records = records_of(first + rest)
    assert process.returncode == 130
    assert 1 <= len(records) < 300 and all(r["status"] == "ok" for r in records)
    assert error_lines(stderr) == [
        PREFIX + f"interrupted after {len(records)} of 300 scans; the results written are "
        "complete"]


# --- heatmaps and folders: record, footer and exit code agree ---------------------------


def test_a_heatmap_that_cannot_be_written_fails_its_scan(scan_files, int8_model, tmp_path):
    out = tmp_path / "heatmaps"
    (out / f"{scan_files[0].stem}.heatmap.png").mkdir(parents=True)  # in the way
    arguments = ["--model", str(int8_model), "--heatmap", str(out), *map(str, scan_files[:2])]
    result = CliRunner().invoke(cli.app, ["--json", *arguments])
    assert result.exit_code == 1
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["status"] == "error" and first["error"].startswith("heatmap not written (")
    assert first["label"] is not None  # the classification itself is kept
    assert second["status"] == "ok" and second["error"] is None
    assert result.stderr.count("\n") == 1 and "heatmap not written" in result.stderr
    table = CliRunner().invoke(cli.app, arguments)
    assert table.exit_code == 1 and "1 classified, 1 failed" in table.stdout


def test_a_heatmap_for_a_name_that_is_not_utf8(corpus, int8_model, tmp_path):
    scan = corpus["name-not-utf8"].argument
    result = CliRunner().invoke(cli.app, ["--json", "--model", str(int8_model), "--heatmap",
                                          str(tmp_path), str(scan)])
    assert result.exit_code == 0, result.output
    (written,) = tmp_path.iterdir()
    assert os.fsencode(written.name) == b"bad\xff\xfe.heatmap.png"


def test_an_unreadable_subfolder_is_a_failed_input(scan_files, int8_model, tmp_path,
                                                   monkeypatch):
    (tmp_path / "locked").mkdir()
    shutil.copy(scan_files[0], tmp_path / "a.jpg")
    shutil.copy(scan_files[1], tmp_path / "locked" / "b.jpg")
    listing = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return listing(path)

    monkeypatch.setattr(inputs.os, "scandir", scandir)
    result = CliRunner().invoke(cli.app, ["--json", "--model", str(int8_model), str(tmp_path)])
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(Path(r["file"]).name, r["status"]) for r in records] == [
        ("a.jpg", "ok"), ("locked", "error")]
    assert records[1]["error"] == "cannot list folder: permission denied"
    assert result.stderr == f"{PREFIX}{tmp_path / 'locked'}: cannot list folder: " \
                            "permission denied\n"


def test_an_unreadable_subfolder_really_fails(scan_files, int8_model, tmp_path):
    """chmod 000 as a user that cannot bypass it (root drops its capabilities)."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is missing")
    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copy(scan_files[0], locked / "b.jpg")
    locked.chmod(0o000)
    prefix = []
    if os.geteuid() == 0:
        capabilities = "-dac_override,-dac_read_search"
        prefix = ["setpriv", f"--inh-caps={capabilities}", f"--bounding-set={capabilities}"]
    command = [*prefix, sys.executable, "-m", "lungcnn.edge", "--json", "--model",
               str(int8_model), str(tmp_path)]
    try:
        completed = subprocess.run(command, capture_output=True, timeout=TIMEOUT_S, cwd=REPO,
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        locked.chmod(0o755)
    assert completed.returncode == 1, completed.stderr
    (record,) = records_of(completed.stdout)
    assert record["error"] == "cannot list folder: permission denied"


@pytest.mark.parametrize("which", ["model", "manifest"])
def test_a_model_or_manifest_that_is_a_fifo_is_exit_2_not_a_hang(which, int8_model, scan_files,
                                                                 tmp_path):
    model = model_with_a_fifo(which, int8_model, tmp_path)
    completed = edge_classify(scan_files[0], model=model, timeout=60)
    assert completed.returncode == 2
    (line,) = error_lines(completed.stderr)
    assert line.endswith(": not a regular file: a named pipe (FIFO)") and "m." in line
