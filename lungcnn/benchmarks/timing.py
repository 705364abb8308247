"""Latency as a distribution: warm up, time each call separately, report percentiles.

Only the standard library and numpy, so the LiteRT worker stays free of TensorFlow. Also the
wall time of whole commands, each a fresh process, in alternating rounds.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

PERCENTILES = (50, 90, 99)


def time_calls(call: Callable[[int], object], calls: int, warmup: int) -> np.ndarray:
    """Seconds taken by each of `calls` timed calls of `call(i)`, after `warmup` untimed ones.

    `call` gets the call index so callers can cycle through inputs.
    """
    for index in range(warmup):
        call(index)
    samples = np.empty(calls, dtype=np.float64)
    for index in range(calls):
        start = time.perf_counter()
        call(index)
        samples[index] = time.perf_counter() - start
    return samples


def distribution_ms(samples_s: np.ndarray, per: int = 1) -> dict:
    """Percentiles, mean and extremes in milliseconds (divided by `per` items per call)."""
    samples_ms = np.asarray(samples_s, dtype=np.float64) * 1000.0 / per
    summary = {f"p{q}": float(np.percentile(samples_ms, q)) for q in PERCENTILES}
    summary.update(
        {
            "mean": float(samples_ms.mean()),
            "min": float(samples_ms.min()),
            "max": float(samples_ms.max()),
            "n": int(samples_ms.size),
        }
    )
    return summary


def alternating_rounds(runs: dict[str, list[str]], repeats: int, cwd: Path,
                       env: dict[str, str], exit_codes: tuple[int, ...] = (0,),
                       ) -> dict[str, list[float]]:
    """Wall seconds of each command line of `runs`, each a fresh process, run in `repeats`
    alternating rounds so that a change of the machine's load falls on all of them alike.
    Raises SystemExit naming the command when it ends with an exit code not in `exit_codes`."""
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeats):
        for label, argv in runs.items():
            started = time.perf_counter()
            done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
            if done.returncode not in exit_codes:
                raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}: "
                                 f"{done.stderr.strip()}")
            times[label].append(time.perf_counter() - started)
    return times
