"""Speed and cost: every (variant, thread count) timed in its own fresh process
(benchmarks.worker), in rounds that alternate between all of them, and latencies as
ratios to the reference float32 TFLite model of the same run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungcnn.benchmarks.config import BenchConfig
from lungcnn.benchmarks.runtimes import KERAS
from lungcnn.benchmarks.timing import distribution_ms
from lungcnn.benchmarks.worker import Worker

REFERENCE_ARCH = "reference"
REFERENCE_VARIANT = "float32"
ROUND_WARMUP_CALLS = 2  # after the first timing round, to refill caches other processes evicted


def measure_speed(runs: list[dict], config: BenchConfig, log) -> dict[str, np.ndarray]:
    """Fill each variant's "speed" and "cost" and return the raw samples (seconds) by label.

    Every (variant, thread count) gets its own process, started one at a time; the timed
    calls are then made in rounds that visit every process, so a burst of load from other
    sessions falls on all models alike instead of on whichever was being timed."""
    workers: dict[tuple[int, int, int], Worker] = {}
    collected: dict[tuple, list[np.ndarray]] = {}
    try:
        for r, run in enumerate(runs):
            for v, variant in enumerate(run["variants"]):
                for threads in config.threads:
                    log(f"  {run['run']}/{variant['variant']}: starting at {threads} thread(s)")
                    workers[(r, v, threads)] = Worker(
                        Path(variant["model_file"]), threads, [Path(f) for f in run["test_files"]]
                    )
        for index, calls in enumerate(_round_sizes(config.timed_calls, config.rounds)):
            log(f"  timing round {index + 1} of {config.rounds}")
            warmup = config.warmup_calls if index == 0 else ROUND_WARMUP_CALLS
            for key, worker in workers.items():
                for kind, count, batch in _timings(runs[key[0]]["variants"][key[1]], calls, config):
                    collected.setdefault((*key, kind), []).append(worker.time(kind, count, warmup, batch))
    finally:
        for worker in workers.values():
            worker.close()
    return _fill_speed_and_cost(runs, workers, collected, config)


def _round_sizes(calls: int, rounds: int) -> list[int]:
    return [len(part) for part in np.array_split(np.arange(calls), min(rounds, calls))]


def _timings(variant: dict, calls: int, config: BenchConfig) -> list[tuple[str, int, int]]:
    kinds = [("invoke", calls, 1), ("end_to_end", calls, 1)]
    if variant["runtime"] == KERAS and config.keras_batch > 1:
        # Each batched call classifies a whole batch, so fewer calls give as many images.
        kinds.append(("batched", max(1, -(-calls // 8)), config.keras_batch))
    return kinds


def _fill_speed_and_cost(runs, workers, collected, config) -> dict[str, np.ndarray]:
    samples = {}
    for (r, v, threads), worker in workers.items():
        run, variant = runs[r], runs[r]["variants"][v]
        timings = variant.setdefault("speed", {}).setdefault(str(threads), {})
        for kind, label, per in (("invoke", "invoke_ms", 1), ("end_to_end", "end_to_end_ms", 1),
                                 ("batched", "batched_per_image_ms", config.keras_batch)):
            if (r, v, threads, kind) not in collected:
                continue
            seconds = np.concatenate(collected[(r, v, threads, kind)])
            timings[label] = distribution_ms(seconds, per=per)
            samples[f"{run['run']}/{variant['variant']}/{kind}/{threads}"] = seconds
        if "batched_per_image_ms" in timings:
            timings["batch_size"] = config.keras_batch
        timings["load_s"] = worker.cost["load_s"]
        if threads == max(config.threads):
            variant["cost"].update({key: worker.cost[key] for key in
                                    ("import_s", "load_s", "first_call_s", "peak_rss_mb", "tensorflow_loaded")})
    return samples


def add_reference_ratios(runs: list[dict]) -> None:
    """p50 latencies as multiples of the reference float32 TFLite model's, same thread count."""
    reference = next((r for r in runs if r["arch"] == REFERENCE_ARCH), runs[0])
    baseline = next(v for v in reference["variants"] if v["variant"] == REFERENCE_VARIANT)
    for run in runs:
        run["is_reference"] = run is reference
        for variant in run["variants"]:
            variant["vs_reference_float32"] = {
                threads: {
                    f"{kind}_p50": timings[f"{kind}_ms"]["p50"]
                    / baseline["speed"][threads][f"{kind}_ms"]["p50"]
                    for kind in ("invoke", "end_to_end")
                }
                for threads, timings in variant["speed"].items()
            }
