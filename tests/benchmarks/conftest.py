"""A benchmark of the tiny fixture run, computed once per session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bench_run_dir(tiny_keras_run, tiny_tflite_models, tmp_path_factory) -> Path:
    """A copy of the tiny run with every variant but `dynamic`, which the benchmark must
    convert on the fly."""
    run_dir = tmp_path_factory.mktemp("bench") / "tiny"
    shutil.copytree(tiny_keras_run, run_dir)
    for suffix in (".tflite", ".json"):
        (run_dir / f"model_dynamic{suffix}").unlink()
    return run_dir


@pytest.fixture(scope="session")
def bench_output(bench_run_dir, tmp_path_factory) -> tuple[object, Path, dict]:
    """(CLI result, output folder, parsed JSON) of a quick benchmark of the tiny run."""
    from typer.testing import CliRunner

    from lungcnn.benchmarks.cli import app

    out = tmp_path_factory.mktemp("bench_results")
    result = CliRunner().invoke(
        app,
        ["--run", str(bench_run_dir), "--out", str(out), "--name", "smoke",
         "--timed-calls", "5", "--quick"],
    )
    payload = json.loads((out / "smoke.json").read_text()) if (out / "smoke.json").exists() else {}
    return result, out, payload
