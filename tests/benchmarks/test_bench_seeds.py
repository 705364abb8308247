"""`--seeds`: the spread of quality across seed runs (no training here: the run stands for
its own seed, and an architecture outside the registry is refused clearly)."""

from __future__ import annotations

import json
import shutil

import pytest

from lungcnn.benchmarks.bench import BenchError
from lungcnn.benchmarks.config import BenchConfig
from lungcnn.benchmarks.seeds import multi_seed


@pytest.fixture()
def seeded_run(bench_output, bench_run_dir, tmp_path):
    """A copy of the benchmarked tiny run (all variants converted) that declares seed 0."""
    run_dir = tmp_path / "tiny-seed0"
    shutil.copytree(bench_run_dir, run_dir)
    _declare_seed(run_dir, 0)
    return run_dir


def _declare_seed(run_dir, seed):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest.update({"seed": seed, "config": {"seed": seed}})
    (run_dir / "manifest.json").write_text(json.dumps(manifest))


def test_seed_summary_of_a_run_that_is_its_own_seed(seeded_run):
    summary = multi_seed(BenchConfig(runs=(seeded_run,), seeds=1, quick=True), log=lambda _: None)
    variants = summary["architectures"]["tiny-fixture"]
    assert set(variants) == {"keras", "float32", "float16", "dynamic", "int8"}
    for stats in variants.values():
        assert stats["n_seeds"] == 1 and stats["runs"] == [str(seeded_run)]
        accuracy = stats["test_accuracy"]
        assert accuracy["std"] == 0.0
        assert 0.0 <= accuracy["min"] == accuracy["mean"] == accuracy["max"] <= 1.0


def test_seeds_of_an_unregistered_architecture_are_refused(bench_run_dir, tmp_path):
    config = BenchConfig(runs=(bench_run_dir,), seeds=2, quick=True)
    with pytest.raises(BenchError, match="not in the trainer's registry"):
        multi_seed(config, log=lambda _: None, seeds_root=tmp_path)


def test_an_existing_run_of_the_same_recipe_is_reused_as_another_seed(seeded_run, tmp_path):
    other = seeded_run.parent / "tiny-fixture-seed1"  # the trainer's default name for seed 1
    shutil.copytree(seeded_run, other)
    _declare_seed(other, 1)
    config = BenchConfig(runs=(seeded_run,), seeds=2, quick=True)
    summary = multi_seed(config, log=lambda _: None, seeds_root=tmp_path / "unused")
    keras = summary["architectures"]["tiny-fixture"]["keras"]
    assert keras["runs"] == [str(seeded_run), str(other)] and keras["n_seeds"] == 2
    assert len(keras["test_accuracy"]["values"]) == 2 and keras["test_accuracy"]["std"] >= 0.0
    assert summary["reused"] == [str(other)] and summary["trained"] == []
    assert not (tmp_path / "unused").exists()
