"""The command: options, representative folders, --strict, atomic writes and error exit codes."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import lungcnn.convert.converter
from lungcnn.convert.cli import app
from lungcnn.convert.converter import ConvertOptions, convert_keras_run
from lungcnn.convert.errors import ConvertError
from lungcnn.edge.errors import NOTICE
from lungcnn.edge.manifest import read_manifest

pytest.importorskip("tensorflow")

runner = CliRunner()


def _convert(*args):
    result = runner.invoke(app, [str(arg) for arg in args])
    return result.exit_code, result.output


def _convert_int8_represented_by(run_dir, folder, target):
    return _convert(
        run_dir / "model.keras", "--quantize", "int8", "--representative", folder, "--out", target
    )


def _error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    return errors[0]


def _image_files(root, split, count):
    run = json.loads((root / "manifest.json").read_text())
    return run["data_dir"], run["split"][split][:count]


@pytest.fixture()
def out_dir(tmp_path):
    return tmp_path / "out"


@pytest.fixture()
def run_copy(tiny_keras_run, tmp_path):
    """The tiny run in a private folder, for tests that write beside the model."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("model.keras", "manifest.json"):
        shutil.copy(tiny_keras_run / name, run_dir / name)
    return run_dir


def test_help_documents_exit_codes():
    code, output = _convert("--help")
    assert code == 0
    assert "Exit codes" in output and "--strict" in output and "--representative" in output


def test_single_variant_with_out_and_int8_io(tiny_keras_run, out_dir):
    target = out_dir / "tiny_int8.tflite"
    code, output = _convert(
        tiny_keras_run / "model.keras", "--quantize", "int8", "--io", "int8", "--out", target
    )
    assert code == 0, output
    manifest = read_manifest(target)
    assert manifest["io"] == "int8"
    assert manifest["input"]["dtype"] == "int8" and manifest["output"]["dtype"] == "int8"
    assert manifest["source_model"]["path"].endswith("model.keras")
    assert "int8" in output and NOTICE in output


def test_int8_with_float32_io_keeps_float_edges(tiny_keras_run, out_dir):
    [conversion] = convert_keras_run(
        tiny_keras_run / "model.keras",
        ConvertOptions(quantizations=("int8",), io="float32", out=out_dir / "f.tflite"),
    )
    assert conversion.manifest["input"]["dtype"] == "float32"
    assert conversion.manifest["parity"]["val"]["count"] > 0


def test_representative_set_from_a_flat_folder(tiny_keras_run, tmp_path, out_dir):
    data_dir, files = _image_files(tiny_keras_run, "train", 5)
    folder = tmp_path / "flat"
    folder.mkdir()
    for rel in files:
        shutil.copy(f"{data_dir}/{rel}", folder / rel.replace("/", "_"))
    [conversion] = convert_keras_run(
        tiny_keras_run / "model.keras",
        ConvertOptions(quantizations=("int8",), representative_dir=folder, out=out_dir / "c.tflite"),
    )
    representative = conversion.manifest["representative_set"]
    assert representative["count"] == 5 and representative["layout"] == "flat"
    assert str(folder) in representative["source"]


def test_representative_set_from_class_folders(tiny_keras_run, tmp_path, out_dir):
    data_dir, files = _image_files(tiny_keras_run, "train", 12)
    folder = tmp_path / "classes"
    for rel in files:
        target = folder / rel.split("/", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f"{data_dir}/{rel}", target)
    code, output = _convert_int8_represented_by(tiny_keras_run, folder, out_dir / "c.tflite")
    assert code == 0, output
    representative = read_manifest(out_dir / "c.tflite")["representative_set"]
    assert representative["count"] == 12 and representative["layout"] == "class folders"


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("empty", "no image files"),
        ("dataset root", "class folders must be"),
        ("mixed", "mixes images and subfolders"),
        ("missing", "not found"),
    ],
)
def test_bad_representative_folder_is_a_usage_error(
    tiny_keras_run, tmp_path, out_dir, layout, message
):
    folder = tmp_path / "representative"
    if layout != "missing":
        folder.mkdir()
    if layout == "dataset root":
        (folder / "train" / "Covid").mkdir(parents=True)
    if layout == "mixed":
        (folder / "Covid").mkdir()
        (folder / "loose.png").write_bytes(b"not really")
    code, output = _convert_int8_represented_by(tiny_keras_run, folder, out_dir / "x.tflite")
    assert code == 2
    assert message in _error_line(output)
    assert not out_dir.exists()


def test_representative_set_refuses_test_images(tiny_keras_run, tmp_path, out_dir):
    data_dir, files = _image_files(tiny_keras_run, "test", 6)
    folder = tmp_path / "leaky"
    folder.mkdir()
    for rel in files:
        (folder / rel.replace("/", "_")).symlink_to(f"{data_dir}/{rel}")
    code, output = _convert_int8_represented_by(tiny_keras_run, folder, out_dir / "x.tflite")
    assert code == 2
    assert "validation/test" in _error_line(output)


def test_strict_parity_failure_writes_nothing(tiny_keras_run, out_dir, monkeypatch):
    real = lungcnn.convert.converter.tflite_probabilities

    def shifted_classes(path, images):
        return np.roll(real(path, images), 1, axis=1)  # every top-1 answer changes

    monkeypatch.setattr(lungcnn.convert.converter, "tflite_probabilities", shifted_classes)
    target = out_dir / "strict.tflite"
    code, output = _convert(
        tiny_keras_run / "model.keras", "--quantize", "float32", "--out", target, "--strict"
    )
    assert code == 1
    assert "nothing written" in _error_line(output)
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_strict_passes_when_parity_holds(tiny_keras_run, out_dir):
    target = out_dir / "ok.tflite"
    code, output = _convert(
        tiny_keras_run / "model.keras",
        "--quantize",
        "float32",
        "--out",
        target,
        "--strict",
        "--min-agreement",
        "0.8",
    )
    assert code == 0, output
    assert target.is_file() and target.with_suffix(".json").is_file()


def test_interrupted_write_leaves_no_partial_file(tiny_keras_run, out_dir, monkeypatch):
    target = out_dir / "atomic.tflite"
    target.parent.mkdir()
    target.write_bytes(b"previous model")

    real_replace = os.replace

    def killed(source, destination):
        if Path(destination).parent == out_dir:  # the final write, not the scratch copy
            raise KeyboardInterrupt  # as if the process died between writing and renaming
        real_replace(source, destination)

    monkeypatch.setattr("lungcnn.edge.manifest.os.replace", killed)
    with pytest.raises(KeyboardInterrupt):
        convert_keras_run(
            tiny_keras_run / "model.keras", ConvertOptions(quantizations=("float32",), out=target)
        )
    monkeypatch.undo()
    assert target.read_bytes() == b"previous model"
    assert sorted(p.name for p in out_dir.iterdir()) == ["atomic.tflite"]


def test_write_failure_is_a_one_line_error(tiny_keras_run, out_dir, monkeypatch):
    def disk_full(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lungcnn.convert.converter, "write_bytes_atomic", disk_full)
    with pytest.raises(ConvertError, match="No space left"):
        convert_keras_run(
            tiny_keras_run / "model.keras",
            ConvertOptions(quantizations=("float32",), out=out_dir / "x.tflite"),
        )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing model", "model file not found"),
        ("not keras", "not a Keras model file"),
        ("text named .keras", "not a Keras model file"),
        ("no run manifest", "manifest not found"),
        ("unknown quantization", "Invalid value"),
        ("out is under a file", "not writable"),
        ("out with all", "--out names one file"),
        ("out not tflite", "must end in .tflite"),
        ("uint8 io on float16", "--io uint8 needs --quantize int8"),
        ("missing data", "not found"),
        ("data without the run's files", "is readable under"),
        ("manifest without data_dir", "not found (pass --data DIR)"),
        ("split file outside the classes", "is not one of the classes"),
    ],
)
def test_usage_errors_exit_2(case, message, tiny_keras_run, tmp_path):
    model = tiny_keras_run / "model.keras"
    args = ["--quantize", "float32", "--out", tmp_path / "x.tflite"]
    if case == "missing model":
        model = tmp_path / "nope.keras"
    elif case == "not keras":
        model = tmp_path / "model.h5"
        model.write_bytes(b"\x89HDF")
    elif case == "text named .keras":
        model = tmp_path / "model.keras"
        model.write_text("hello")
    elif case == "no run manifest":
        model = tmp_path / "model.keras"
        shutil.copy(tiny_keras_run / "model.keras", model)
    elif case == "unknown quantization":
        args = ["--quantize", "int4"]
    elif case == "out is under a file":
        (tmp_path / "file").write_text("")
        args = ["--quantize", "float32", "--out", tmp_path / "file" / "x.tflite"]
    elif case == "out with all":
        args = ["--quantize", "all", "--out", tmp_path / "x.tflite"]
    elif case == "out not tflite":
        args = ["--quantize", "float32", "--out", tmp_path / "x.bin"]
    elif case == "uint8 io on float16":
        args = ["--quantize", "float16", "--io", "uint8"]
    elif case == "missing data":
        args += ["--data", tmp_path / "no-dataset"]
    elif case == "data without the run's files":
        (tmp_path / "other-dataset").mkdir()
        args += ["--data", tmp_path / "other-dataset"]
    elif case in ("manifest without data_dir", "split file outside the classes"):
        model = _copy_run_with_edited_manifest(tiny_keras_run, tmp_path / "run", case)
    code, output = _convert(model, *args)
    assert code == 2, output
    if case == "unknown quantization":  # Typer's own usage error
        assert message in output
    else:
        assert message in _error_line(output)
    assert not (tmp_path / "x.tflite").exists()


def _copy_run_with_edited_manifest(run_dir, target_dir, case):
    target_dir.mkdir()
    shutil.copy(run_dir / "model.keras", target_dir / "model.keras")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    if case == "manifest without data_dir":
        del manifest["data_dir"]
    else:  # a readable validation file whose folder is not a class
        data_dir = target_dir / "data"
        for folder in Path(manifest["data_dir"]).glob("*/*"):
            link = data_dir / folder.relative_to(manifest["data_dir"])
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(folder)
        first_val = manifest["split"]["val"][0]
        stray = f"train/Unknown/{Path(first_val).name}"
        (data_dir / stray).parent.mkdir()
        shutil.copy(data_dir / first_val, data_dir / stray)
        manifest["data_dir"], manifest["split"]["val"][0] = str(data_dir), stray
    (target_dir / "manifest.json").write_text(json.dumps(manifest))
    return target_dir / "model.keras"


def test_missing_tensorflow_is_a_one_line_error(tiny_keras_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` fail
    code, output = _convert(
        tiny_keras_run / "model.keras", "--quantize", "float32", "--out", tmp_path / "x.tflite"
    )
    assert code == 2
    assert "TensorFlow is not installed" in _error_line(output)


def test_summary_counts_changes_against_float32(run_copy):
    from lungcnn.convert.cli import summary_table

    conversions = convert_keras_run(
        run_copy / "model.keras", ConvertOptions(quantizations=("float32", "float16"))
    )
    assert sorted(p.name for p in run_copy.iterdir()) == [
        "manifest.json",
        "model.keras",
        "model_float16.json",
        "model_float16.tflite",
        "model_float32.json",
        "model_float32.tflite",
    ]
    lines = summary_table(conversions).splitlines()
    assert [line.split()[0] for line in lines] == ["variant", "keras", "float32", "float16"]
    float32_row, float16_row = lines[2].split(), lines[3].split()
    assert float32_row[0] == "float32" and float32_row[3] == "100.0" and float32_row[-1] == "0"
    float16_test = conversions[1].probabilities["test"].argmax(1)
    float32_test = conversions[0].probabilities["test"].argmax(1)
    assert float16_row[-1] == str(int((float16_test != float32_test).sum()))
