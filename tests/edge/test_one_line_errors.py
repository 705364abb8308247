"""One-line errors and exit codes (issue 22, items 7-13 and 18): option errors, capped
workers and threads, a deeply nested manifest, Ctrl-C while importing, scans the API must
not raise for, threads that cannot start, and untrusted text in CSV and table output."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hostile_corpus import model_with_a_fifo
from lungcnn.edge import cli, workers
from lungcnn.edge.api import Classifier
from lungcnn.edge.report import CsvWriter, ScanResult, TableWriter
from lungcnn.edge.runtime import ModelError
from lungcnn.edge.serve.settings import SettingsError, read_token

REPO = Path(__file__).resolve().parents[2]
PREFIX = "edge-classify: error: "


def run_main(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stopped:
        cli.main(list(args))
    return stopped.value.code, capsys.readouterr().err


@pytest.mark.parametrize("option, value", [("--workers", "100000"), ("--threads", "100000"),
                                           ("--workers", "0"), ("--bogus", None)])
def test_option_errors_are_one_line_exit_2(option, value, capsys, scan_files):
    arguments = [option] + ([value] if value else []) + [str(scan_files[0])]
    code, stderr = run_main(capsys, *arguments)
    assert code == 2
    (line,) = stderr.splitlines()
    assert line.startswith(PREFIX) and option in line and line.endswith("--help)")


def test_serve_option_errors_are_one_line_exit_2(capsys):
    code, stderr = run_main(capsys, "serve", "--threads", "100000")
    (line,) = stderr.splitlines()
    assert code == 2 and line.startswith("edge-classify serve: error: Invalid value for")


def test_a_deeply_nested_manifest_is_a_model_error(int8_model, tmp_path, capsys, scan_files):
    model = tmp_path / "m.tflite"
    shutil.copy(int8_model, model)
    (tmp_path / "m.json").write_text("[" * 100_000)
    with pytest.raises(ModelError, match="nested too deeply"):
        Classifier(model)
    code, stderr = run_main(capsys, "--model", str(model), str(scan_files[0]))
    assert code == 2 and stderr.count("\n") == 1 and "nested too deeply" in stderr


@pytest.mark.parametrize("which", ["model", "manifest"])
def test_the_api_refuses_a_fifo_model_or_manifest(which, int8_model, tmp_path):
    with pytest.raises(ModelError, match="not a regular file: a named pipe"):
        Classifier(model_with_a_fifo(which, int8_model, tmp_path))


def test_ctrl_c_while_importing_is_one_line_exit_130():
    """SIGINT arrives while lungcnn.edge.cli imports numpy."""
    code = ("import builtins, os, runpy, signal\n"
            "real = builtins.__import__\n"
            "def hooked(name, *args, **kwargs):\n"
            "    if name == 'numpy':\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "    return real(name, *args, **kwargs)\n"
            "builtins.__import__ = hooked\n"
            "runpy.run_module('lungcnn.edge', run_name='__main__')\n")
    completed = subprocess.run([sys.executable, "-c", code, "x.png"], capture_output=True,
                               cwd=REPO, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert completed.returncode == 130
    assert completed.stderr.decode() == PREFIX + "interrupted\n"


# --- the API never raises for a bad scan ------------------------------------------------


@pytest.fixture(scope="module")
def classifier(int8_model) -> Classifier:
    return Classifier(int8_model)


def test_a_name_with_a_nul_byte_is_a_failed_result(classifier):
    result = classifier.classify("a\x00b.png")
    assert not result.ok and "NUL byte" in result.error and result.label is None


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytes_like_scans_are_classified(kind, classifier, scan_files):
    result = classifier.classify(kind(scan_files[0].read_bytes()))
    assert result.ok and result.file == "<bytes>" and result.label in classifier.class_names


@pytest.mark.parametrize("scan", [123, None, 1.5])
def test_other_types_are_a_failed_result(scan, classifier):
    result = classifier.classify(scan)
    assert not result.ok and result.error.startswith("a scan must be a path, bytes or an array")


def test_the_result_has_typed_attributes(classifier, scan_files):
    result = classifier.classify(scan_files[0])
    record = result.to_dict()
    assert (result.label, result.flag, result.reason) == (
        record["label"], record["flag"], record["reason"])
    assert (result.confidence, result.raw_confidence, result.probabilities) == (
        record["confidence"], record["raw_confidence"], record["probabilities"])


# --- threads that cannot start ----------------------------------------------------------


class _Replicable:
    def replica(self):
        return self


def test_workers_that_cannot_start_leave_fewer_workers(monkeypatch):
    start, started = threading.Thread.start, []

    def start_once(thread):
        if started:
            raise RuntimeError("can't start new thread")
        started.append(thread)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_once)
    results = workers.classify_in_order(_Replicable(), lambda _c, item: item * 2,
                                        range(20), 8)
    assert list(results) == [item * 2 for item in range(20)] and len(started) == 1


def test_no_thread_at_all_classifies_in_the_calling_thread(monkeypatch):
    def refuse(_thread):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    results = workers.classify_in_order(_Replicable(), lambda _c, item: item + 1, range(5), 4)
    assert list(results) == [1, 2, 3, 4, 5]


# --- untrusted text in CSV and table output ---------------------------------------------

NAMES = ("Co\x1b[31mvid", "Nor\rmal")


def test_csv_escapes_control_characters_from_names_and_errors():
    out = io.StringIO()
    writer = CsvWriter(out, NAMES, [])
    writer.write(ScanResult(Path("esc\x1b[2Jname\r.dcm"),
                            error="no decoder for transfer syntax 1.2\x1b[31m\r"))
    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text
    header, row = csv.reader(io.StringIO(text))
    assert "Co\\x1b[31mvid" in header and row[0] == "esc\\x1b[2Jname\\r.dcm"
    assert row[header.index("error")].endswith("1.2\\x1b[31m\\r")


def test_the_table_escapes_class_names_from_the_manifest():
    out = io.StringIO()
    TableWriter(out, NAMES, ["a.png"]).finish(0, 0)
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()
    assert "Co\\x1b[31mvid" in out.getvalue()


# --- the token file ---------------------------------------------------------------------


def test_a_token_file_that_is_a_fifo_or_a_device_is_refused(tmp_path):
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    with pytest.raises(SettingsError, match="not a regular file: a named pipe"):
        read_token(fifo)
    if Path("/dev/zero").exists():
        with pytest.raises(SettingsError, match="not a regular file: a character device"):
            read_token(Path("/dev/zero"))


def test_a_file_that_is_not_a_model_says_so_before_looking_for_its_manifest():
    with pytest.raises(ModelError, match="README.md: not a TFLite model file"):
        Classifier(REPO / "README.md")
