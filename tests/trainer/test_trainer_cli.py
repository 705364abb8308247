"""`lungcnn train` / `python -m lungcnn.trainer`: a short real training and the documented exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lungcnn.edge.contract import CLASS_NAMES
from lungcnn.edge.manifest import read_manifest, sha256_file
from lungcnn.edge.errors import EXIT_USAGE
from lungcnn.trainer.cli import EXIT_UNREADABLE
from lungcnn.trainer.dataset import split_sha256

EVALUATE_KEYS = {"n", "accuracy", "auc_macro", "per_class", "confusion_matrix", "ci95"}


def test_run_directory_layout(smoke_run):
    run_dir = smoke_run.run_dir
    for name in (
        "model.keras",
        "manifest.json",
        "history.json",
        "metrics.json",
        "plots/learning_curves.png",
        "plots/confusion_matrix.png",
        "plots/roc.png",
    ):
        assert (run_dir / name).is_file(), name
    for png in (run_dir / "plots").iterdir():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in run_dir.rglob(".*")]  # no temporary files left behind


def test_manifest_describes_the_run(smoke_run, dataset_dir):
    run_dir = smoke_run.run_dir
    manifest = read_manifest(run_dir / "model.keras")
    assert manifest["kind"] == "keras" and manifest["model_file"] == "model.keras"
    assert manifest["class_names"] == list(CLASS_NAMES)
    assert manifest["input"]["size"] == smoke_run.size == manifest["config"]["input_size"]
    assert manifest["arch"] == "reference" and manifest["seed"] == 0
    assert (
        manifest["config"]["epochs"] == 2
        and manifest["config"]["limit_per_class"] == smoke_run.limit
        and manifest["config"]["exclude_findings"] == ["nodule"]
    )
    assert manifest["model_sha256"] == sha256_file(run_dir / "model.keras")
    split = manifest["split"]
    lists = {name: split[name] for name in ("train", "val", "test", "test_dedup")}
    assert split["sha256"] == split_sha256(lists)
    assert not set(split["train"]) & set(split["val"])
    assert all(p.startswith("train/") for p in split["train"] + split["val"])
    assert all(p.startswith("test/") for p in split["test"])
    assert set(split["test_dedup"]) <= set(split["test"])
    assert len(split["train"]) + len(split["val"]) == len(split["test"]) == smoke_run.limit * 3
    assert all((dataset_dir / p).is_file() for p in split["train"] + split["test"])
    assert {"python", "tensorflow", "keras", "numpy"} <= set(manifest["versions"])


def test_metrics_history_and_summary(smoke_run):
    run_dir = smoke_run.run_dir
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"val", "test", "test_dedup", "by_source"}
    assert all(set(metrics[name]) == EVALUATE_KEYS for name in ("val", "test", "test_dedup"))
    by_source = metrics["by_source"]["val"]
    assert set(by_source) == {"base-covid", "base-pediatric"}
    assert sum(m["n"] for m in by_source.values()) == metrics["val"]["n"]
    assert by_source["base-pediatric"]["age_groups"] == ["pediatric"]
    assert "val base-covid" in smoke_run.output
    assert metrics["test"]["n"] == smoke_run.limit * 3
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["loss"]) == 2 and history["best_epoch"] in (1, 2)
    assert {"accuracy", "val_accuracy", "val_auc", "val_loss"} <= set(history)
    for name in ("val", "test", "test_dedup"):
        assert name in smoke_run.output
    assert "Not a medical device" in smoke_run.output


def test_saved_model_takes_raw_pixels(smoke_run):
    keras = pytest.importorskip("keras")
    run_dir = smoke_run.run_dir
    model = keras.models.load_model(run_dir / "model.keras")
    assert model.input_shape == (None, smoke_run.size, smoke_run.size, 1)
    assert isinstance(model.layers[0], keras.layers.Rescaling)


def test_existing_run_is_not_overwritten(smoke_run, dataset_dir, invoke_train):
    result = invoke_train("--data", dataset_dir, "--out", smoke_run.run_dir)
    assert result.exit_code == EXIT_USAGE and "--overwrite" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "/no/such/dataset"], "dataset not found"),
        (["--val-fraction", "1.5"], "val_fraction"),
        (["--arch", "no-such-arch"], "no-such-arch"),
    ],
)
def test_usage_errors_exit_2(tmp_path, invoke_train, args, message):
    result = invoke_train("--out", tmp_path / "run", *args)
    assert result.exit_code == EXIT_USAGE and message in result.output


def test_wrong_layout_exits_2(tmp_path, invoke_train):
    (tmp_path / "data" / "train" / "Cats").mkdir(parents=True)
    result = invoke_train("--data", tmp_path / "data", "--out", tmp_path / "run")
    assert result.exit_code == EXIT_USAGE and "unknown: Cats" in result.output


def test_unreadable_scan_exits_1_naming_it(corrupt_dataset, tmp_path, invoke_train):
    result = invoke_train(
        "--data", corrupt_dataset, "--size", 32, "--epochs", 1, "--out", tmp_path / "run"
    )
    assert result.exit_code == EXIT_UNREADABLE
    assert "broken.jpeg: corrupt or truncated image" in result.output
    assert not (tmp_path / "run" / "model.keras").exists()


def test_missing_tensorflow_exits_2_with_install_hint(monkeypatch, tmp_path, invoke_train):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` fail
    result = invoke_train("--out", tmp_path / "run")
    assert result.exit_code == EXIT_USAGE
    assert "pip install 'lungcnn[train]'" in result.output


def test_python_dash_m_trainer_help_lists_exit_codes():
    result = subprocess.run(
        [sys.executable, "-m", "lungcnn.trainer", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "Exit codes" in result.stdout and "--limit-per-class" in result.stdout


def test_same_seed_trains_the_same_model(tmp_path, dataset_dir, invoke_train):
    histories = []
    for name in ("first", "second"):
        args = ["--data", dataset_dir, "--out", tmp_path / name, "--epochs", 2, "--size", 32]
        result = invoke_train(*args, "--limit-per-class", 4, "--seed", 3)
        assert result.exit_code == 0, result.output
        histories.append(json.loads((tmp_path / name / "history.json").read_text()))
    assert histories[0] == histories[1]


def test_unwritable_out_exits_2_before_training(tmp_path, dataset_dir, invoke_train):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke_train("--data", dataset_dir, "--out", blocker / "run")
    assert result.exit_code == EXIT_USAGE and "cannot create the run folder" in result.output
