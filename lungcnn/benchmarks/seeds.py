"""The slow mode (`--seeds N`): train N seeds of each benchmarked run's architecture and
recipe, convert them, and report the spread of their quality across seeds.

A finished run of the same architecture and recipe at that seed (the trainer's default
runs/<arch>-seed<N>, or runs/bench-seeds/ from an earlier benchmark) is reused, not retrained;
the run the benchmark was given stands for its own seed.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from lungcnn.benchmarks.config import BenchConfig
from lungcnn.benchmarks.quality import quality_report
from lungcnn.benchmarks.runtimes import KERAS, open_classifier, predict_all
from lungcnn.benchmarks.testset import test_set_for_run
from lungcnn.edge.manifest import read_manifest
from lungcnn.edge.runtime import input_contract

SEEDS_ROOT = Path("runs/bench-seeds")
SUMMARISED = {
    "test_accuracy": ("test", "accuracy"),
    "test_auc_macro": ("test", "auc_macro"),
    "test_dedup_accuracy": ("test_dedup", "accuracy"),
    "test_dedup_auc_macro": ("test_dedup", "auc_macro"),
}


def multi_seed(config: BenchConfig, log, seeds_root: Path = SEEDS_ROOT) -> dict:
    started = time.monotonic()
    seed_runs: dict[str, list[Path]] = {}
    provenance: dict[str, list[str]] = {"trained": [], "reused": []}
    for run_dir in config.runs:
        manifest = read_manifest(Path(run_dir) / "model.keras")
        if manifest.get("arch") not in seed_runs:
            seed_runs[manifest.get("arch")] = [
                _seed_run(Path(run_dir), manifest, seed, seeds_root, provenance, log)
                for seed in range(config.seeds)
            ]
    train_s = time.monotonic() - started
    return {
        "seeds": config.seeds,
        "train_s": round(train_s, 1),
        **provenance,
        "architectures": {arch: _summarise(runs, config, log) for arch, runs in seed_runs.items()},
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def _seed_run(
    run_dir: Path, manifest: dict, seed: int, seeds_root: Path, provenance: dict, log
) -> Path:
    from lungcnn.benchmarks.errors import BenchError
    from lungcnn.trainer.architectures import ARCHITECTURES
    from lungcnn.trainer.dataset import default_data_dir
    from lungcnn.trainer.run import train_run

    if manifest.get("seed") == seed:
        return run_dir
    arch = manifest.get("arch")
    target = seeds_root / f"{run_dir.name}-seed{seed}"
    # The trainer's default run directory, or ours from an earlier benchmark.
    for candidate in (run_dir.parent / f"{arch}-seed{seed}", target):
        if _same_recipe(candidate, manifest, seed):
            log(f"seed {seed} of {arch}: reusing {candidate}")
            provenance["reused"].append(str(candidate))
            return candidate
    if arch not in ARCHITECTURES:
        raise BenchError(f"{run_dir}: architecture {arch!r} is not in the trainer's registry; "
                         "cannot train more seeds")
    data_dir = Path(manifest.get("data_dir") or default_data_dir())
    log(f"seed {seed} of {arch}: training into {target}")
    result = train_run(ARCHITECTURES[arch], replace(_train_config(manifest), seed=seed), data_dir,
                       target, verbose=0)
    log(f"seed {seed} of {arch}: trained in {result.wall_seconds:.0f} s")
    provenance["trained"].append(str(target))
    return target


def _same_recipe(candidate: Path, manifest: dict, seed: int) -> bool:
    """True when `candidate` is a finished run of the same architecture and recipe at `seed`."""
    from lungcnn.edge.manifest import ManifestError

    if not (candidate / "model.keras").is_file():
        return False
    try:
        other = read_manifest(candidate / "model.keras")
    except ManifestError:
        return False
    recipe = {**manifest.get("config", {}), "seed": seed}
    return other.get("arch") == manifest.get("arch") and other.get("config") == recipe


def _train_config(manifest: dict):
    """The run's own resolved recipe, rebuilt from its manifest."""
    from lungcnn.trainer.config import TrainConfig

    return TrainConfig.from_json(manifest["config"])


def _summarise(runs: list[Path], config: BenchConfig, log) -> dict:
    from lungcnn.benchmarks.variants import ensure_variants

    values: dict[str, dict[str, list]] = {}
    for run_dir in runs:
        keras_path = run_dir / "model.keras"
        manifest = read_manifest(keras_path)
        test_set = test_set_for_run(manifest, config.data_dir, config.scans_per_class)
        inputs = test_set.inputs(input_contract(keras_path, manifest))
        keras_probs = None
        for variant, path in ensure_variants(keras_path, config.data_dir, log).items():
            probs = predict_all(open_classifier(path), inputs)
            keras_probs = probs if variant == KERAS else keras_probs
            quality = quality_report(test_set, probs, keras_probs)
            for key, (subset, metric) in SUMMARISED.items():
                values.setdefault(variant, {}).setdefault(key, []).append(quality[subset][metric])
    return {
        variant: {
            "n_seeds": len(runs),
            "runs": [str(run) for run in runs],
            **{key: _spread(series) for key, series in metrics.items()},
        }
        for variant, metrics in values.items()
    }


def _spread(series: list) -> dict:
    finite = np.array([v for v in series if v is not None], dtype=np.float64)
    if not finite.size:
        return {"mean": None, "std": None, "min": None, "max": None, "values": series}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        "min": float(finite.min()),
        "max": float(finite.max()),
        "values": series,
    }
