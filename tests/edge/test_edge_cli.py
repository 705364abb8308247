"""edge-classify end to end on tiny TFLite models: outputs, inputs, exit codes, bad files and
bad models, and the promise that the device never imports TensorFlow."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lungcnn.edge import cli
from lungcnn.edge.contract import load_scan
from lungcnn.edge.manifest import read_manifest, write_json_atomic
from lungcnn.edge.report import NOTICE, Progress
from lungcnn.edge.runtime import ModelError, TFLiteClassifier, interpreter_class

INT8_PROBABILITY_TOLERANCE = 0.05  # int8 vs float32 model, per class probability
FLOAT_PROBABILITY_TOLERANCE = 1e-4  # float32 TFLite vs Keras


def run(*args: str):
    return CliRunner().invoke(cli.app, [str(a) for a in args])


def json_records(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def one_line_errors(result) -> list[str]:
    lines = result.stderr.splitlines()
    assert all(line.startswith("edge-classify: error: ") for line in lines), result.stderr
    return lines


@pytest.fixture(scope="module")
def int8_io_model(tiny_keras_run, tmp_path_factory) -> Path:
    """The tiny run's int8 variant with signed int8 input/output (the shared one is uint8)."""
    from lungcnn.convert.converter import ConvertOptions, convert_keras_run

    out = tmp_path_factory.mktemp("int8_io") / "model_int8io.tflite"
    options = ConvertOptions(quantizations=("int8",), io="int8", out=out)
    (conversion,) = convert_keras_run(tiny_keras_run / "model.keras", options)
    return conversion.tflite_path


# --- outputs -----------------------------------------------------------------------------


def test_table_lists_every_scan_with_the_notice(int8_model, scan_files, scans_dir):
    result = run("--model", int8_model, scans_dir)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["file", "label", "confidence"]
    rows = [line for line in lines[1:] if line.strip()]
    for path in scan_files:  # long paths are shortened from the left, the file name stays
        assert sum(line.split()[0].endswith(path.name) for line in rows) == 1
    assert lines[-1] == NOTICE
    assert result.stderr == ""


def test_json_lines_are_complete_records(int8_model, scan_files):
    result = run("--json", "--model", int8_model, *scan_files)
    assert result.exit_code == 0
    records = json_records(result)
    assert [r["file"] for r in records] == [str(p) for p in scan_files]
    class_names = read_manifest(int8_model)["class_names"]
    for record in records:
        assert record["status"] == "ok" and record["error"] is None
        assert record["notice"] == NOTICE
        probabilities = record["probabilities"]
        assert list(probabilities) == class_names
        assert sum(probabilities.values()) == pytest.approx(1, abs=0.02)
        assert record["label"] == max(probabilities, key=probabilities.get)
        assert record["raw_confidence"] == probabilities[record["label"]]
        # the tiny model has no calibration (temperature 1): calibrated is nearly the raw one
        assert record["confidence"] == pytest.approx(record["raw_confidence"], abs=0.01)


def test_csv_has_a_header_and_the_notice_on_every_row(int8_model, scan_files):
    result = run("--csv", "--model", int8_model, *scan_files[:2], "missing.png")
    assert result.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    class_names = read_manifest(int8_model)["class_names"]
    header = ["file", "status", "label", "confidence", "raw_confidence", *class_names, "flag",
              "reason", "stable_confidence", "feature_distance", "nearest_class",
              "prediction_set", "error",
              "notice"]
    assert list(rows[0]) == header
    assert [row["status"] for row in rows] == ["ok", "ok", "error"]
    assert rows[2]["error"] == "no such file" and rows[2]["label"] == ""
    assert all(row["notice"] == NOTICE for row in rows)


def test_float32_tflite_matches_keras(edge_models, tiny_keras_run, scan_files):
    keras = pytest.importorskip("tensorflow").keras
    model = keras.models.load_model(tiny_keras_run / "model.keras")
    classifier = TFLiteClassifier(edge_models["float32"])
    scans = np.stack([load_scan(p, classifier.input_size) for p in scan_files])
    expected = model.predict(scans.astype(np.float32), verbose=0)
    actual, _ = classifier.run(scans)
    np.testing.assert_allclose(actual, expected, atol=FLOAT_PROBABILITY_TOLERANCE)


@pytest.mark.parametrize("resizable", [True, False])
def test_a_batch_runs_as_its_scans_one_by_one(edge_models, scan_files, resizable):
    """One invoke for a batch when the model's batch dimension can be resized; one per scan
    otherwise; the same probabilities and features either way, and from the same invoke."""
    classifier = TFLiteClassifier(edge_models["int8"])
    classifier._resizable = resizable
    scans = np.stack([load_scan(p, classifier.input_size) for p in scan_files])
    probabilities, features = classifier.run(scans)
    assert probabilities.shape == (len(scans), 3)
    assert features.shape == (len(scans), classifier.features_dim)
    for scan, row, feature_row in zip(scans, probabilities, features):
        one, one_features = classifier.run(scan[None])
        np.testing.assert_array_equal(one[0], row)
        np.testing.assert_array_equal(one_features[0], feature_row)
    with pytest.raises(ValueError):
        classifier.run(scans[:, :8])


@pytest.mark.parametrize("variant", ["uint8-io", "int8-io"])
def test_int8_models_match_float32(variant, edge_models, int8_io_model, scan_files):
    reference = TFLiteClassifier(edge_models["float32"])
    quantized = TFLiteClassifier(edge_models["int8"] if variant == "uint8-io" else int8_io_model)
    for path in scan_files:
        scan = load_scan(path, reference.input_size)
        np.testing.assert_allclose(
            quantized.run(scan[None])[0],
            reference.run(scan[None])[0],
            atol=INT8_PROBABILITY_TOLERANCE,
        )


@pytest.mark.parametrize("quantization", ["float16", "dynamic"])
def test_every_converted_variant_runs(quantization, edge_models, scan_files):
    result = run("--json", "--threads", "2", "--model", edge_models[quantization], scan_files[0])
    assert result.exit_code == 0 and json_records(result)[0]["status"] == "ok"


# --- inputs ------------------------------------------------------------------------------


@pytest.fixture
def scan_tree(dicom_writer, tmp_path, scan_files, scan_gray) -> Path:
    """A folder with nested, upper-case, hidden, extension-less DICOM and non-image files."""
    root = tmp_path / "tree"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    shutil.copy(scan_files[0], root / "a.jpg")
    shutil.copy(scan_files[1], root / "sub" / "B.PNG")
    shutil.copy(scan_files[2], root / "sub" / "deeper" / "c.Jpeg")
    shutil.copy(scan_files[3], root / ".hidden" / "d.jpg")
    shutil.copy(scan_files[3], root / "._e.jpg")
    dicom_writer(root / "sub" / "IM0001", scan_gray)
    (root / "notes.txt").write_text("not a scan")
    return root


def test_folders_are_searched_recursively(int8_model, scan_tree):
    result = run("--json", "--model", int8_model, scan_tree)
    assert result.exit_code == 0, result.output
    found = sorted(Path(r["file"]).relative_to(scan_tree).as_posix() for r in json_records(result))
    assert found == ["a.jpg", "sub/B.PNG", "sub/IM0001", "sub/deeper/c.Jpeg"]


def test_globs_are_expanded(int8_model, scan_tree):
    result = run("--json", "--model", int8_model, f"{scan_tree}/**/*.[jJP]*")
    assert result.exit_code == 0, result.output
    found = sorted(Path(r["file"]).name for r in json_records(result))
    assert found == ["B.PNG", "a.jpg", "c.Jpeg"]


def test_each_file_is_classified_once(int8_model, scan_tree):
    result = run("--json", "--model", int8_model, scan_tree, scan_tree / "a.jpg")
    assert len(json_records(result)) == 4


def test_explicit_files_are_decoded_by_content(int8_model, scan_files, tmp_path):
    png_named_jpg = tmp_path / "scan.jpg"
    shutil.copy(next(p for p in scan_files if p.suffix == ".png"), png_named_jpg)
    result = run("--json", "--model", int8_model, png_named_jpg)
    assert result.exit_code == 0 and json_records(result)[0]["status"] == "ok"


# --- bad inputs: one line each, the batch goes on, exit code 1 ---------------------------


def test_bad_inputs_are_one_line_each_and_the_batch_continues(int8_model, scan_files, tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    jpeg = scan_files[0].read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "empty-folder").mkdir()
    bad = {
        "empty.png": "empty file",
        "text.png": "not a supported image format",
        "truncated.jpg": "corrupt or truncated image",
        "empty-folder": "no image files in folder",
        "missing.png": "no such file",
        "nothing-*.png": "no files match this pattern",
    }
    arguments = [scan_files[0], *(tmp_path / name for name in bad), scan_files[1]]
    result = run("--json", "--model", int8_model, *arguments)
    assert result.exit_code == 1
    records = json_records(result)
    assert [r["status"] for r in records] == ["ok", *["error"] * len(bad), "ok"]
    errors = one_line_errors(result)
    assert len(errors) == len(bad)
    for (name, reason), record, line in zip(bad.items(), records[1:], errors):
        assert record["error"].startswith(reason) and record["label"] is None
        assert line == f"edge-classify: error: {tmp_path / name}: {record['error']}"


def test_a_symlink_loop_is_a_one_line_error(int8_model, scan_files, tmp_path):
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    result = run("--json", "--model", int8_model, loop, scan_files[0])
    assert result.exit_code == 1
    assert [r["status"] for r in json_records(result)] == ["error", "ok"]
    assert len(one_line_errors(result)) == 1


def test_table_reports_failures_in_its_footer(int8_model, scan_files, tmp_path):
    result = run("--model", int8_model, scan_files[0], tmp_path / "missing.png")
    assert result.exit_code == 1
    assert "1 classified, 1 failed" in result.stdout
    missing = tmp_path / "missing.png"
    assert one_line_errors(result) == [f"edge-classify: error: {missing}: no such file"]


def _without_root_file_access() -> list[str]:
    """Command prefix under which chmod 000 really denies reading: nothing for a normal user;
    for root, setpriv drops the capabilities that let root read any file."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is missing")
    capabilities = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={capabilities}", f"--bounding-set={capabilities}"]


def test_unreadable_file_really_fails(int8_model, scan_files, tmp_path):
    locked = tmp_path / "locked.jpg"
    shutil.copy(scan_files[0], locked)
    locked.chmod(0o000)
    arguments = ["--json", "--model", str(int8_model), str(locked)]
    code = f"from lungcnn.edge.cli import main; main({arguments!r})"
    completed = subprocess.run(
        [*_without_root_file_access(), sys.executable, "-c", code],
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 1, completed.stderr
    assert json.loads(completed.stdout)["error"] == "permission denied"
    assert completed.stderr.strip() == f"edge-classify: error: {locked}: permission denied"


FUZZ_FILES = 40


def test_fuzzed_batch_is_classified_or_refused_file_by_file(int8_model, scan_files, tmp_path):
    rng = random.Random(7)
    for case in range(FUZZ_FILES):
        data = bytearray(rng.choice(scan_files).read_bytes())
        if rng.random() < 0.5:
            data = data[: rng.randrange(len(data))]
        for _ in range(rng.randint(1, 10)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        (tmp_path / f"fuzz{case:02d}.jpg").write_bytes(bytes(data))
    result = run("--json", "--model", int8_model, tmp_path)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    records = json_records(result)
    assert len(records) == FUZZ_FILES
    failed = [r for r in records if r["status"] == "error"]
    assert all(r["status"] == "ok" or r["error"] for r in records)
    assert len(one_line_errors(result)) == len(failed)
    assert result.exit_code == (1 if failed else 0)


# --- usage and model errors: exit code 2 -------------------------------------------------


def test_usage_errors_exit_2(int8_model, scan_files):
    assert run().exit_code == 2
    assert run("--json", "--csv", "--model", int8_model, scan_files[0]).exit_code == 2
    assert run("--threads", "0", "--model", int8_model, scan_files[0]).exit_code == 2


def test_missing_bundled_model_exits_2(scan_files, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "BUNDLED_MODEL", tmp_path / "lungcnn_int8.tflite")
    result = run(scan_files[0])
    assert result.exit_code == 2
    assert one_line_errors(result) == [
        f"edge-classify: error: no bundled model at {tmp_path / 'lungcnn_int8.tflite'}; "
        "pass --model FILE.tflite"
    ]


def _model_copy(model: Path, folder: Path, manifest_change=None, content: bytes | None = None):
    copy = folder / "model.tflite"
    copy.write_bytes(model.read_bytes() if content is None else content)
    manifest = read_manifest(model)
    if manifest_change is not None:
        manifest_change(manifest)
        write_json_atomic(copy.with_suffix(".json"), manifest)
    return copy


BAD_MODELS = {
    "not-tflite": (None, b"\x00" * 64, "not a TFLite model file"),
    "corrupt-tflite": (None, b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64, "cannot load TFLite model"),
    "manifest-size": (lambda m: m["input"].update(size=128), None, "does not match its manifest"),
    "manifest-classes": (
        lambda m: m.update(class_names=["a", "b", "c", "d"]),
        None,
        "do not match the 4 classes of its manifest",
    ),
    "manifest-features": (
        lambda m: m.update(features_output={"dim": 1000}), None, "features output does not match"
    ),
    "manifest-other-model": (
        lambda m: m.update(tflite_sha256="0" * 64), None, "differs from the one its manifest"
    ),
    "manifest-missing": (None, None, "manifest not found"),
    "manifest-not-ours": (lambda m: m.update(format="other"), None, "not a lungcnn manifest"),
}


@pytest.mark.parametrize("kind", sorted(BAD_MODELS))
def test_bad_models_exit_2_with_one_line(kind, int8_model, scan_files, tmp_path):
    change, content, reason = BAD_MODELS[kind]
    if kind in ("not-tflite", "corrupt-tflite"):
        change = lambda manifest: None  # noqa: E731 - a valid manifest beside a bad model
    model = _model_copy(int8_model, tmp_path, change, content)
    result = run("--model", model, scan_files[0])
    assert result.exit_code == 2
    (line,) = one_line_errors(result)
    assert reason in line and str(tmp_path) in line  # names the model or its manifest
    assert result.stdout == ""


def test_missing_model_file_exits_2(scan_files, tmp_path):
    result = run("--model", tmp_path / "nope.tflite", scan_files[0])
    assert result.exit_code == 2 and "model file not found" in result.stderr


# --- runtime and process -----------------------------------------------------------------


def test_runtime_falls_back_to_tensorflow_only_last(monkeypatch):
    pytest.importorskip("tensorflow")
    for module in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
                   "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, module, None)
    import tensorflow as tf

    assert interpreter_class() is tf.lite.Interpreter
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ModelError, match="no TFLite runtime installed"):
        interpreter_class()


def test_the_cli_never_imports_tensorflow(int8_model, scan_files):
    code = (
        "import sys\n"
        "from lungcnn.edge.cli import main\n"
        "try:\n"
        f"    main(['--json', '--model', {str(int8_model)!r}, {str(scan_files[0])!r}])\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0, done.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.splitlines()[0])["status"] == "ok"
    assert completed.stdout.splitlines()[-1] == "[]"


def test_python_dash_m_edge_shows_help():
    completed = subprocess.run(
        [sys.executable, "-m", "lungcnn.edge", "--help"], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0
    assert "Exit codes" in completed.stdout and "Not a medical device" in completed.stdout


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal_and_for_big_batches():
    terminal, pipe = _Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = Progress(stream, total=Progress.MIN_FILES)
        progress.update(3)
        progress.clear()
    assert "3/10" in terminal.getvalue() and pipe.getvalue() == ""
    small = _Terminal()
    Progress(small, total=Progress.MIN_FILES - 1).update(1)
    assert small.getvalue() == ""


def test_no_progress_when_stderr_is_piped(int8_model, scan_files, tmp_path):
    for index in range(Progress.MIN_FILES):
        shutil.copy(scan_files[index % len(scan_files)], tmp_path / f"{index}.jpg")
    result = run("--json", "--model", int8_model, tmp_path)
    assert result.exit_code == 0 and result.stderr == ""
