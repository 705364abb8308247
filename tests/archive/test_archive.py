"""`lungcnn classify-archive` on a local Ray: every row is the `edge-classify --json` record
of the same file, bad files are rows with their error, resume skips what is done, and a
worker killed mid-run loses and duplicates nothing."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("ray", reason="needs the [scale] extra")
pa = pytest.importorskip("pyarrow", reason="needs the [scale] extra")
from pyarrow import parquet  # noqa: E402

from lungcnn import cli as top_cli  # noqa: E402
from lungcnn.archive.job import ACTOR_ARGUMENTS_NOTICE  # noqa: E402
from lungcnn.archive.output import (  # noqa: E402
    RUN_MANIFEST,
    ResultsError,
    count_check,
    part_files,
    read_results,
)
from lungcnn.archive.run import EXIT_INCOMPLETE, ArchiveConfig, RunOutcome, run_archive  # noqa: E402,E501
from lungcnn.archive.sources import SourceError, list_sources
from lungcnn.edge.api import BUNDLED_MODEL
from lungcnn.edge.report import NOTICE

DECIMALS_TOLERANCE = 1e-6  # the --json records round to 6 decimals
REPO = Path(__file__).resolve().parents[2]


def run_job(sources, out: Path, model: Path, **options):
    config = ArchiveConfig(tuple(str(s) for s in sources), out, model=model, **options)
    return run_archive(config)


def rows_by_path(out: Path) -> dict[str, dict]:
    rows = read_results(out).to_pylist()
    by_path = {row["path"]: row for row in rows}
    assert len(by_path) == len(rows), "duplicated paths"
    return by_path


def assert_same_record(row: dict, record: dict, *, ignore_file: bool = False) -> None:
    """The row minus path and sha256 is the --json record (floats to its 6 decimals)."""
    got = {key: value for key, value in row.items() if key not in ("path", "sha256")}
    assert list(got) == list(record)
    for key, expected in record.items():
        if key == "file" and ignore_file:
            continue
        value = got[key]
        if key == "probabilities" and expected is not None:
            assert list(value) == list(expected)
            assert all(abs(value[n] - expected[n]) <= DECIMALS_TOLERANCE for n in expected)
        elif isinstance(expected, float):
            assert value == pytest.approx(expected, abs=DECIMALS_TOLERANCE), key
        else:
            assert value == expected, (key, row["path"])


def write_manifest(path: Path, entries) -> Path:
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["study", "path"])
        writer.writerows([index, str(entry)] for index, entry in enumerate(entries))
    return path


def invoke(*args) -> object:
    return CliRunner().invoke(top_cli.app, ["classify-archive", *map(str, args)])


def archive_files(archive: Path) -> list[Path]:
    return sorted(p for p in archive.rglob("*") if p.is_file())


# --- results -----------------------------------------------------------------------------


def test_every_row_is_the_edge_classify_record_bad_files_included(
        ray_cluster, int8_model, archive, mixed_archive, archive_reference, edge_json, tmp_path,
        monkeypatch):
    """One run over the generated archive (a folder) and a mixed one (a CSV manifest with
    relative paths, bad files, a missing file and a folder), into a relative --out."""
    folder = tmp_path / "a-folder.png"
    folder.mkdir()
    names = sorted(p.name for p in mixed_archive.iterdir())
    mixed = [mixed_archive / n for n in names] + [mixed_archive / "missing.png", folder]
    manifest = write_manifest(mixed_archive.parent / "mixed.csv",
                              [f"{mixed_archive.name}/{n}" for n in names] + mixed[-2:])
    out = tmp_path / "results"
    monkeypatch.chdir(tmp_path)
    result = invoke(archive, manifest, "--out", "results", "--model", int8_model,
                    "--batch-size", 16, "--workers", 2)
    listed = len(archive_reference) + len(mixed)
    assert result.exit_code == 1, result.output
    summary, notice = result.stdout.strip().splitlines()[-2:]
    assert summary.startswith(f"lungcnn classify-archive: {listed} scans: {listed - 6} "
                              "classified (")
    assert "6 failed; 0 already done" in summary and notice == NOTICE
    rows = rows_by_path(out)
    assert set(rows) == set(archive_reference) | {str(p) for p in mixed}
    reference = {**archive_reference,
                 **edge_json(int8_model, *mixed[:-1])}  # it would search a folder for scans
    assert len(reference) == listed - 1
    for path, record in reference.items():
        assert_same_record(rows[path], record)
        if Path(path).is_file():
            assert rows[path]["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    errors = {Path(p).name: r["error"] for p, r in rows.items() if r["status"] == "error"}
    assert set(errors) == {"text.png", "empty.jpg", "truncated.png", "random.jpg",
                           "missing.png", "a-folder.png"}
    assert (errors["missing.png"], errors["a-folder.png"]) == ("no such file", "is a directory")
    assert rows[str(folder)]["sha256"] is None
    parts = part_files(out)
    assert len(parts) == math.ceil(listed / 16)
    assert parquet.read_schema(parts[0]).metadata[b"notice"] == NOTICE.encode()
    run = json.loads((out / RUN_MANIFEST).read_text())
    assert run["status"] == "complete" and run["notice"] == NOTICE
    assert run["model"]["sha256"] == hashlib.sha256(int8_model.read_bytes()).hexdigest()
    assert run["code_version"] and run["started"] <= run["finished"]
    assert run["check"] == {"rows": listed, "unique_paths": listed, "missing": 0,
                            "duplicated": 0, "passed": True}
    assert (run["counts"]["ok"], run["counts"]["error"]) == (listed - 6, 6)
    assert run["failures"]["count"] == 6 and run["failures"]["all_listed"]


def test_resume_skips_scans_already_done(ray_cluster, int8_model, archive,
                                         archive_reference, tmp_path):
    """The second run is the console command in a fresh process with its own local Ray."""
    files = archive_files(archive)
    out = tmp_path / "results"
    first = run_job([write_manifest(tmp_path / "first.csv", files[:40])], out, int8_model,
                    batch_size=16)
    assert (first.classified, first.skipped) == (40, 0)
    first_parts = {p: p.stat().st_mtime_ns for p in part_files(out)}
    command = [str(Path(sys.executable).with_name("lungcnn")), "classify-archive",
               str(archive), "--out", str(out), "--model", str(int8_model),
               "--address", "local", "--workers", "2", "--batch-size", "32"]
    second = subprocess.run(command, capture_output=True, text=True, timeout=240,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"40 already done, {len(files) - 40} done now" in second.stdout
    assert "constructor arguments in the object store" not in second.stderr  # Ray's notice
    assert {p: p.stat().st_mtime_ns for p in first_parts} == first_parts
    third = run_job([archive], out, int8_model)
    assert (third.exit_code, third.skipped, third.classified) == (0, len(files), 0)
    rows = rows_by_path(out)
    assert len(rows) == len(files)
    for path, row in rows.items():
        assert_same_record(row, archive_reference[path])
    manifest = json.loads((out / RUN_MANIFEST).read_text())
    assert [run["classified"] for run in manifest["runs"]] == [40, len(files) - 40, 0]
    with pytest.raises(ResultsError, match="another model"):
        run_job([archive], out, BUNDLED_MODEL)


# --- a worker killed mid-run -------------------------------------------------------------


def worker_waiting_on_a_fifo() -> int | None:
    """The ArchiveClassifier actor process (its title names the class) with a thread blocked
    opening a FIFO."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            waiting = {t.joinpath("wchan").read_text() for t in (entry / "task").iterdir()}
        except OSError:
            continue
        if b"ArchiveClassifier" in command and "wait_for_partner" in waiting:
            return int(entry.name)  # one of its threads (Ray runs tasks in one) waits
    return None


def feed_fifo(fifo: Path, data: bytes, stop: threading.Event) -> None:
    """Give `data` to every reader of `fifo` until `stop` (opening blocks until one reads)."""
    while not stop.is_set():
        try:
            with fifo.open("wb") as stream:
                stream.write(data)
        except BrokenPipeError:  # a reader that went away
            continue


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds workers in /proc")
def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(
        ray_cluster, int8_model, archive, archive_reference, tmp_path):
    """A FIFO in the middle of the list holds its worker inside a batch, so the kill lands
    while the job is certainly unfinished and that worker certainly mid-task."""
    files = archive_files(archive)
    fifo = tmp_path / "held-open.png"
    os.mkfifo(fifo)
    manifest = write_manifest(tmp_path / "list.csv", files[:100] + [fifo] + files[100:])
    out, batch = tmp_path / "results", 4
    total_parts = math.ceil((len(files) + 1) / batch)
    outcome: list = []
    job = threading.Thread(target=lambda: outcome.append(
        run_job([manifest], out, int8_model, workers=2, batch_size=batch)))
    job.start()
    deadline, waiting = time.monotonic() + 90, None
    while time.monotonic() < deadline and (waiting is None
                                           or len(part_files(out)) < total_parts // 2):
        time.sleep(0.05)
        waiting = worker_waiting_on_a_fifo()
    parts_at_kill = len(part_files(out))
    assert waiting is not None and total_parts // 2 <= parts_at_kill < total_parts
    os.kill(waiting, signal.SIGKILL)
    stop = threading.Event()
    feeder = threading.Thread(target=feed_fifo, args=(fifo, files[0].read_bytes(), stop))
    feeder.start()
    job.join(timeout=120)
    stop.set()
    os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # releases the feeder's open
    feeder.join(timeout=5)
    assert not job.is_alive() and outcome, "the job did not finish"
    rows = rows_by_path(out)
    assert outcome[0].check.passed and outcome[0].exit_code == 0, [
        (path, row["error"]) for path, row in rows.items() if row["status"] != "ok"]
    assert len(rows) == len(files) + 1 == outcome[0].check.rows
    for path in map(str, files):
        assert_same_record(rows[path], archive_reference[path])
    assert_same_record(rows[str(fifo)], archive_reference[str(files[0])], ignore_file=True)


# --- sources and usage errors ------------------------------------------------------------


def test_only_rays_actor_arguments_notice_is_dropped():
    """The line Ray's core worker prints for each actor of the pool, and no other E line."""
    notice = (b"[2026-12-02 00:21:16,716 E 7009 7009] core_worker.cc:2465: Actor with class "
              b"name: 'MapWorker(MapBatches(ArchiveClassifier))' and ID: '743f7128f47b094f6d7"
              b"8b64f01000000' has constructor arguments in the object store and max_restarts"
              b" > 0. If the arguments in the object store go out of scope or are lost, the "
              b"actor restart will fail.\n")
    assert ACTOR_ARGUMENTS_NOTICE.match(notice)
    other = b"[2026-12-02 00:21:16,716 E 7009 7009] core_worker.cc:812: Failed to connect\n"
    assert not ACTOR_ARGUMENTS_NOTICE.match(other)
    assert not ACTOR_ARGUMENTS_NOTICE.match(notice.replace(b"ArchiveClassifier", b"Other"))


def test_manifests_resolve_relative_paths_and_list_each_path_once(tmp_path, archive):
    files = archive_files(archive)[:5]
    relative = [os.path.relpath(f, tmp_path) for f in files]
    parquet.write_table(pa.table({"path": relative + relative[:2], "note": list("abcdefg")}),
                        tmp_path / "list.parquet")
    listing = list_sources([str(tmp_path / "list.parquet"), str(files[0])])
    assert listing.paths == tuple(str(f) for f in files)
    assert listing.duplicates == 3 and set(listing.errors) == {None}
    (tmp_path / "nopath.csv").write_text("file\nx.png\n")
    with pytest.raises(SourceError, match="no 'path' column"):
        list_sources([str(tmp_path / "nopath.csv")])
    (tmp_path / "blank.csv").write_text("path\nx.png\n\"\"\n")
    with pytest.raises(SourceError, match="row 2 has no path"):
        list_sources([str(tmp_path / "blank.csv")])


def test_usage_errors_are_one_line_with_exit_2(tmp_path, archive, int8_model):
    (tmp_path / "file").write_text("x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    (tmp_path / "bad.tflite").write_bytes(b"not a model")
    cases = {
        "no files match this pattern": [str(tmp_path / "*.dcm"), "--out", tmp_path / "o"],
        "no image files in folder": [tmp_path / "busy", "--out", tmp_path / "o"],
        "not a folder": [archive, "--out", tmp_path / "file"],
        "not a classify-archive results folder": [archive, "--out", tmp_path / "busy"],
        "not a TFLite model file": [archive, "--out", tmp_path / "o", "--model",
                                    tmp_path / "bad.tflite"],
    }
    for expected, args in cases.items():
        result = invoke(*args, "--model", int8_model) if "--model" not in args else invoke(*args)
        assert result.exit_code == 2, (expected, result.output)
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("lungcnn classify-archive: error: ") and expected in line
    assert invoke(archive, "--out", tmp_path / "o", "--batch-size", "0").exit_code == 2


def test_help_names_the_exit_codes_and_the_top_cli_does_not_import_ray():
    result = invoke("--help")
    assert result.exit_code == 0 and "Exit codes" in result.stdout
    code = "import sys, lungcnn.cli; sys.exit('ray' in sys.modules or 'pyarrow' in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120,
                   env={**os.environ, "PYTHONPATH": str(REPO)})


def test_without_the_scale_extra_it_exits_2_naming_it(tmp_path):
    code = ("import sys; sys.modules['ray'] = None  # as if Ray were not installed\n"
            "from lungcnn.cli import app\n"
            f"app(['classify-archive', {str(tmp_path)!r}, '--out', {str(tmp_path / 'o')!r}])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert "needs the [scale] extra (pip install 'lungcnn[scale]')" in result.stderr


def test_a_failed_count_check_is_exit_3():
    check = count_check(["a", "b", "b"], {"a", "b", "c"})
    assert (check.rows, check.unique_paths, check.missing, check.duplicated) == (3, 2, 1, 1)
    outcome = RunOutcome(listed=3, skipped=0, classified=3, failed=0, flagged=0, check=check,
                         seconds=1.0)
    assert outcome.exit_code == EXIT_INCOMPLETE == 3
    assert "COUNT CHECK FAILED: 1 missing, 1 duplicated" in outcome.summary(Path("out"))
