"""Latency as a distribution: warm up, time each call separately, report percentiles.

Only the standard library and numpy, so the LiteRT worker stays free of TensorFlow.
"""

from __future__ import annotations

import time
from collections.abc import Callable

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
