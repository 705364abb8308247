"""`lungcnn bundle RUN_DIR`: a calibrated int8 model becomes the bundled model, checked.

Every test writes with `--to DIR`; the package's own bundled model is never touched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lungcnn import bundle
from lungcnn.cli import app
from lungcnn.edge.api import BUNDLED_MODEL, Classifier
from lungcnn.edge.replay import read_replay


BUNDLE_FILES = ["lungcnn_int8.json", "lungcnn_int8.replay.npz", "lungcnn_int8.tflite"]


def run(*args):
    return CliRunner().invoke(app, ["bundle", *(str(a) for a in args)])


@pytest.fixture
def run_copy(calibrated_run, tmp_path) -> Path:
    """The calibrated run's int8 model and manifest, in a folder the test may spoil."""
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("model_int8.tflite", "model_int8.json"):
        shutil.copy2(calibrated_run / name, folder / name)
    return folder


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "model_int8.json").read_text())


def _one_line_error(result) -> str:
    assert result.exit_code == bundle.EXIT_ERROR, result.output
    assert result.stderr.startswith("lungcnn bundle: error: ")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    return result.stderr


def test_bundle_copies_the_model_and_renames_model_file_only(calibrated_run, tmp_path,
                                                             committed_scans):
    out = tmp_path / "models"
    result = run(calibrated_run, "--to", out)
    assert result.exit_code == bundle.EXIT_OK, result.output
    assert sorted(p.name for p in out.iterdir()) == BUNDLE_FILES
    source = calibrated_run / "model_int8.tflite"
    assert (out / "lungcnn_int8.tflite").read_bytes() == source.read_bytes()
    written = json.loads((out / "lungcnn_int8.json").read_text())
    assert written.pop("model_file") == "lungcnn_int8.tflite"
    original = _manifest(calibrated_run)
    original.pop("model_file")
    assert written == original
    bundled, run_model = Classifier(out / "lungcnn_int8.tflite"), Classifier(source)
    scan = committed_scans[0]
    assert bundled.classify(scan).to_dict()["probabilities"] == \
        run_model.classify(scan).to_dict()["probabilities"]


def test_bundled_names_come_from_the_api(calibrated_run, tmp_path):
    target = bundle.bundle_model(calibrated_run, tmp_path)
    assert target.name == BUNDLED_MODEL.name and target.with_suffix(".json").is_file()


def test_bundle_replaces_an_existing_bundle(calibrated_run, tmp_path):
    (tmp_path / "lungcnn_int8.tflite").write_bytes(b"old model")
    (tmp_path / "lungcnn_int8.json").write_text("{}")
    assert run(calibrated_run, "--to", tmp_path).exit_code == bundle.EXIT_OK
    assert (tmp_path / "lungcnn_int8.tflite").read_bytes() == \
        (calibrated_run / "model_int8.tflite").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == BUNDLE_FILES


def test_an_uncalibrated_model_is_refused_in_one_line(run_copy, tmp_path):
    manifest = _manifest(run_copy)
    del manifest["calibration"], manifest["trust"]
    (run_copy / "model_int8.json").write_text(json.dumps(manifest))
    out = tmp_path / "models"
    stderr = _one_line_error(run(run_copy, "--to", out))
    assert "not calibrated" in stderr and "lungcnn calibrate" in stderr
    assert not out.exists() or not any(out.iterdir())


def test_a_model_that_differs_from_its_manifest_is_refused(run_copy, tmp_path):
    model = run_copy / "model_int8.tflite"
    model.write_bytes(model.read_bytes() + b"\0")
    assert "SHA-256 differs" in _one_line_error(run(run_copy, "--to", tmp_path / "models"))


def test_a_model_that_does_not_load_leaves_the_old_bundle(run_copy, tmp_path):
    manifest = _manifest(run_copy)
    manifest["input"]["size"] += 1  # the interpreter's input tensor says otherwise
    (run_copy / "model_int8.json").write_text(json.dumps(manifest))
    out = tmp_path / "models"
    out.mkdir()
    (out / "lungcnn_int8.tflite").write_bytes(b"old model")
    (out / "lungcnn_int8.json").write_text("{}")
    assert "does not load" in _one_line_error(run(run_copy, "--to", out))
    assert (out / "lungcnn_int8.tflite").read_bytes() == b"old model"
    assert sorted(p.name for p in out.iterdir()) == ["lungcnn_int8.json", "lungcnn_int8.tflite"]


def test_the_replay_features_are_those_of_the_training_scans(calibrated_run, tmp_path):
    target = bundle.bundle_model(calibrated_run, tmp_path)
    classifier = Classifier(target)
    split = classifier.manifest["training"]["split"]["train"]
    replay = read_replay(target, classifier.manifest["tflite_sha256"],
                         classifier.runtime.features_dim, len(classifier.class_names))
    assert len(replay.labels) == len(split)
    first = Path(classifier.manifest["training"]["data_dir"]) / split[0]
    _, features = classifier.runtime.run(
        classifier.runtime.model_input(classifier.decode(first).gray)[None])
    np.testing.assert_allclose(replay.features[0], features[0], rtol=1e-6)


def test_missing_training_scans_are_refused_in_one_line(calibrated_run, tmp_path):
    stderr = _one_line_error(run(calibrated_run, "--to", tmp_path / "models",
                                 "--data", tmp_path))
    assert "replay features" in stderr and "--data" in stderr
    assert not (tmp_path / "models" / "lungcnn_int8.tflite").exists()


def test_a_run_without_an_int8_model_is_refused(tmp_path):
    assert "not found" in _one_line_error(run(tmp_path, "--to", tmp_path / "models"))
