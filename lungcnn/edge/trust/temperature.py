"""Calibrated confidence: the model's probabilities with a temperature applied, the fit of
that temperature, and the expected calibration error (ECE) it is judged by.

The temperature comes from the manifest's "calibration" section (`lungcnn calibrate`, or
`edge-classify adapt` on the device); a model without one keeps its probabilities (T = 1)."""

from __future__ import annotations

import math

import numpy as np

from lungcnn.edge.manifest import ManifestError
from lungcnn.edge.trust.signal import number

# Probabilities are clipped here before the temperature is applied: just below the int8 output
# step (1/256), so a float model and its int8 conversion are calibrated alike.
PROB_FLOOR = 1e-3
ECE_BINS = 15
TEMPERATURE_RANGE = (0.25, 20.0)


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the model outputs probabilities, so T scales log-probabilities."""
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), PROB_FLOOR, 1.0))
    scaled = logits / float(temperature)
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def temperature_of(calibration: dict) -> float:
    """The calibration section's temperature (1 without a calibration section)."""
    if not calibration:
        return 1.0
    if "temperature" not in calibration:
        raise ManifestError("calibration has no temperature")
    return number(calibration["temperature"], "calibration temperature", low=0.0,
                  low_open=True)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray,
                     bins: int = ECE_BINS) -> list[tuple[int, float, float]]:
    """(scans, mean confidence, accuracy) in each of `bins` equal-width confidence bins;
    (0, nan, nan) for an empty bin."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        rows.append((count, float(confidence[members].mean()) if count else math.nan,
                     float(correct[members].mean()) if count else math.nan))
    return rows


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Weighted mean |accuracy - confidence| over equal-width confidence bins."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return binned_calibration_error(reliability_bins(
        probabilities.max(axis=1), probabilities.argmax(axis=1) == np.asarray(labels), bins))


def binned_calibration_error(rows: list[tuple[int, float, float]]) -> float:
    """The ECE of `reliability_bins` rows: mean |accuracy - confidence|, weighted by scans."""
    total = sum(count for count, _, _ in rows)
    return float(sum(count / total * abs(accuracy - confidence)
                     for count, confidence, accuracy in rows if count)) if total else math.nan


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray, t: float,
                            weights: np.ndarray | None = None) -> float:
    """Mean (or `weights`-weighted mean) NLL of the labels after temperature `t`."""
    calibrated = apply_temperature(probabilities, t)
    losses = -np.log(calibrated[np.arange(len(labels)), labels])
    return float(np.average(losses, weights=weights))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray,
                    weights: np.ndarray | None = None) -> float:
    """The T minimising the NLL of softmax(log p / T): golden-section search on log T."""
    labels = np.asarray(labels, dtype=int)
    low, high = (math.log(v) for v in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2

    def loss(log_t: float) -> float:
        return negative_log_likelihood(probabilities, labels, math.exp(log_t), weights)

    a, b = low, high
    for _ in range(60):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if loss(c) <= loss(d):
            b = d
        else:
            a = c
    return float(math.exp((a + b) / 2))
