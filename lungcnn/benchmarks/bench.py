"""The benchmark itself: every run's Keras model and TFLite variants, side by side, in one
process (timings in fresh child processes, see benchmarks.worker).

    from lungcnn.benchmarks.bench import run_benchmark
    result = run_benchmark(BenchConfig(runs=(Path("runs/reference-seed0"),)), command="...")
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lungcnn.benchmarks.config import BenchConfig
from lungcnn.benchmarks.errors import BenchError
from lungcnn.benchmarks.machine import cpu_seconds, machine_info
from lungcnn.benchmarks.quality import quality_report
from lungcnn.benchmarks.robustness import ACQUISITION_CHANGES, label_stability
from lungcnn.benchmarks.runtimes import KERAS, LITERT, open_classifier, predict_all, runtime_of
from lungcnn.benchmarks.seeds import multi_seed
from lungcnn.benchmarks.speed import REFERENCE_ARCH, add_reference_ratios, measure_speed
from lungcnn.benchmarks.testset import TestSet, test_set_for_run
from lungcnn.benchmarks.trust import evaluate_trust, shift_proxies
from lungcnn.benchmarks.variants import ensure_calibrated, ensure_variants
from lungcnn.edge.api import BUNDLED_MODEL
from lungcnn.edge.contract import Preprocessor
from lungcnn.edge.manifest import library_versions, read_manifest, sha256_file, write_json_atomic
from lungcnn.edge.runtime import input_contract

__all__ = ["BenchError", "Measured", "default_runs", "run_benchmark", "write_results"]


@dataclass(frozen=True)
class Measured:
    """The JSON result and the raw timing samples the plots need (seconds, keyed by label)."""

    result: dict
    samples: dict[str, np.ndarray]


def run_benchmark(config: BenchConfig, command: str, log=print) -> Measured:
    started, cpu_start = time.monotonic(), cpu_seconds()
    load_start = os.getloadavg()
    seeds = None
    if config.seeds:
        seeds = multi_seed(config, log)
    open_set = open_set_reports(config, log) if config.open_set else None
    phase_s = dict.fromkeys(
        ("convert", "calibrate", "quality_and_robustness", "trust", "speed_and_cost"), 0.0)
    runs = [benchmark_run(Path(run_dir), config, phase_s, log) for run_dir in config.runs]
    with _phase(phase_s, "speed_and_cost"):
        samples = measure_speed(runs, config, log)
    add_reference_ratios(runs)
    result = {
        "name": config.name,
        "command": command,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(load_start),
        "versions": library_versions(),
        "config": config.to_json(),
        "notes": NOTES,
        "runs": runs,
        "seeds": seeds,
        "open_set": open_set,
        "phase_s": {phase: round(seconds, 1) for phase, seconds in phase_s.items()},
        "elapsed_s": round(time.monotonic() - started, 1),
        # CPU time of this process and its finished children: what the benchmark costs on an
        # idle machine, whatever the load from other processes stretched the wall time to.
        "cpu_s": round(cpu_seconds() - cpu_start, 1),
    }
    return Measured(result, samples)


def open_set_reports(config: BenchConfig, log) -> dict[str, dict]:
    """The open-set proxy (benchmarks.open_set) of each benchmarked run's architecture."""
    from lungcnn.benchmarks.open_set import open_set_proxy
    from lungcnn.trainer.architectures import ARCHITECTURES

    reports = {}
    for run_dir in config.runs:
        manifest = read_manifest(Path(run_dir) / "model.keras")
        arch = manifest.get("arch")
        if arch in reports:
            continue
        if arch not in ARCHITECTURES:
            raise BenchError(f"{run_dir}: architecture {arch!r} is not in the registry; "
                             "--open-set trains registered architectures only")
        data_dir = Path(config.data_dir or manifest["data_dir"])
        reports[arch] = open_set_proxy(arch, data_dir, log)
    return reports


NOTES = {
    "invoke_ms": "one model call on one prepared (1, size, size, 1) uint8 input: Keras `model(x)`, "
    "LiteRT set_tensor+invoke+get_tensor with (de)quantization (edge.runtime.TFLiteClassifier)",
    "end_to_end_ms": "file on disk -> the model's contract (decode, prepare) -> probabilities, cycling over the test files",
    "batched_per_image_ms": "Keras only: `model(x)` on a batch of keras_batch scans, time per image",
    "timing": "each call timed separately after warm-up; one fresh process per model and thread "
    "count; the calls are made in rounds that visit every process in turn, so load from other "
    "sessions falls on all models alike; percentiles in milliseconds",
    "cost": "measured in the fresh process at the largest thread count: runtime import, model load, "
    "first call, and peak resident memory (VmHWM, see benchmarks.worker.peak_rss_mb) after "
    "loading the model and classifying one scan",
    "robustness": "share of test scans whose predicted label is unchanged by each acquisition change "
    "(benchmarks.robustness)",
    "vs_reference_float32": "p50 latency divided by the reference run's float32 TFLite p50 "
    "at the same thread count, measured in this same benchmark",
    "trust": "TFLite variants only (Keras: null; the device runs the .tflite model): the flags "
    "edge-classify gives (edge.trust.assess) with the thresholds in the "
    "model's manifest, fitted on the run's "
    "train/validation files only by `lungcnn calibrate` (run first when a variant has none); "
    "the test scans are only read (benchmarks.trust). test / test_dedup / shift_proxies: "
    "accuracy, abstain_rate (any flag but ok), accepted_accuracy, wrong_flagged (share of "
    "wrong answers not flagged ok), risk_coverage (accuracy of the most stable share of scans; "
    "stability = calibrated confidence averaged over the scan and its re-acquired copies); "
    "shift_proxies: the test scans shrunk to 128 px and saved as JPEG quality 30, and each "
    "robustness change; non_xray: share of benchmarks.ood_images refused as "
    "out_of_distribution; ece_before/after: 15-bin ECE on test without and with the "
    "temperature; heatmap_ms_one_thread: occlusion heatmap (edge.heatmap) on one thread",
}


def benchmark_run(run_dir: Path, config: BenchConfig, phase_s: dict, log) -> dict:
    """Quality and robustness of every variant of one run; speed and cost come later."""
    keras_path = run_dir / "model.keras"
    if not keras_path.is_file():
        raise BenchError(f"{run_dir}: no model.keras (not a trainer run directory)")
    manifest = read_manifest(keras_path)
    with _phase(phase_s, "convert"):
        variants = ensure_variants(keras_path, config.data_dir, log)
    with _phase(phase_s, "calibrate"):
        ensure_calibrated(run_dir, variants, config.data_dir, log)
    contract = input_contract(keras_path, manifest)
    test_set = test_set_for_run(manifest, config.data_dir, config.scans_per_class,
                                contract.spec.decode_side)
    size = contract.spec.size
    log(f"{run_dir.name}: {manifest.get('arch')} at {size}px, {len(test_set.files)} test scans "
        f"({int(test_set.leak_free.sum())} leak-free)")
    bundled_sha = sha256_file(BUNDLED_MODEL) if BUNDLED_MODEL.is_file() else None
    changes = reused_changes()
    entries, keras_probs = [], None
    for variant, path in variants.items():
        log(f"  {variant}: quality and robustness")
        with _phase(phase_s, "quality_and_robustness"):
            probs, robustness = _predictions(path, test_set, contract, max(config.threads),
                                             changes)
        keras_probs = probs if variant == KERAS else keras_probs
        entries.append({
            "variant": variant,
            "runtime": runtime_of(path),
            "model_file": str(path),
            "bundled": bundled_sha is not None and sha256_file(path) == bundled_sha,
            "quality": quality_report(test_set, probs, keras_probs),
            "cost": {"file_bytes": path.stat().st_size},
            "robustness": robustness,
        })
    with _phase(phase_s, "trust"):
        trust = trust_reports(variants, test_set, config, changes, log)
    for entry in entries:
        entry["trust"] = trust.get(entry["variant"])
    return {
        "run": run_dir.name,
        "run_dir": str(run_dir),
        "arch": manifest.get("arch"),
        "seed": manifest.get("seed"),
        "input_size": size,
        "data_dir": str(test_set.root),
        "test_scans": len(test_set.files),
        "test_dedup_scans": int(test_set.leak_free.sum()),
        "test_files": [str(path) for path in test_set.paths],
        "variants": entries,
    }


@contextmanager
def _phase(totals: dict[str, float], name: str):
    started = time.monotonic()
    try:
        yield
    finally:
        totals[name] += time.monotonic() - started


def trust_reports(variants: dict[str, Path], test_set: TestSet, config: BenchConfig,
                  changes: dict, log) -> dict[str, dict]:
    """The trust report (benchmarks.trust) of every TFLite variant, by variant."""
    from lungcnn.benchmarks.ood_images import write_non_xray_images

    proxies = shift_proxies(changes)
    if config.trust_proxies is not None:
        proxies = {name: proxies[name] for name in config.trust_proxies}
    reports = {}
    with tempfile.TemporaryDirectory() as folder:
        non_xray = write_non_xray_images(folder)
        for variant, path in variants.items():
            if runtime_of(path) != LITERT:
                continue
            log(f"  {variant}: trust")
            reports[variant] = evaluate_trust(
                path, test_set, non_xray, proxies, threads=max(config.threads),
                heatmap_calls=config.heatmap_calls, echo=lambda line: log(f"    {line}"))
    return reports


def _predictions(
    path: Path, test_set: TestSet, contract: Preprocessor, threads: int, changes: dict
) -> tuple[np.ndarray, dict]:
    classifier = open_classifier(path, threads)
    probs = predict_all(classifier, test_set.inputs(contract))
    # test_set.inputs(contract) is robustness.original of each scan: reuse its predictions.
    robustness = label_stability(
        lambda batch: predict_all(classifier, batch), test_set.grays, contract, changes,
        baseline=probs,
    )
    return probs, robustness


def reused_changes() -> dict:
    """The acquisition changes, each computed once per scan and size and then shared by
    every variant of a run (the scans are the same objects for all of them)."""

    def reusing(change):
        done: dict[tuple[int, int], np.ndarray] = {}

        def changed(gray: np.ndarray, contract) -> np.ndarray:
            key = (id(gray), contract)
            if key not in done:
                done[key] = change(gray, contract)
            return done[key]

        return changed

    return {name: reusing(change) for name, change in ACQUISITION_CHANGES.items()}


def write_results(measured: Measured, out_dir: Path, name: str) -> dict[str, Path]:
    from lungcnn.benchmarks.plots import write_plots
    from lungcnn.benchmarks.report import write_markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json_atomic(out_dir / f"{name}.json", measured.result)}
    paths.update(write_plots(measured, out_dir, name))
    paths["markdown"] = write_markdown(measured.result, out_dir / f"{name}.md", paths)
    return paths


def default_runs(runs_root: Path = Path("runs")) -> list[Path]:
    """The reference run (runs/reference-seed0, else the first reference run) and the run
    the bundled edge model was converted from, whichever exist."""
    manifests = {path.parent: _quiet_manifest(path.parent / "model.keras")
                 for path in sorted(runs_root.glob("*/manifest.json"))}
    manifests = {run: manifest for run, manifest in manifests.items() if manifest}
    preferred = runs_root / f"{REFERENCE_ARCH}-seed0"
    references = [run for run, m in manifests.items() if m.get("arch") == REFERENCE_ARCH]
    chosen = [preferred if preferred in references else references[0]] if references else []
    bundled = _bundled_source_sha()
    chosen += [run for run, m in manifests.items()
               if bundled and m.get("model_sha256") == bundled and run not in chosen][:1]
    return chosen


def _bundled_source_sha() -> str | None:
    manifest = _quiet_manifest(BUNDLED_MODEL)
    return (manifest or {}).get("source_model", {}).get("sha256")


def _quiet_manifest(model_path: Path) -> dict | None:
    from lungcnn.edge.manifest import ManifestError

    try:
        return read_manifest(model_path)
    except ManifestError:
        return None
