"""Fitting the temperature of calibrated confidence (`edge.trust.temperature`) and reporting
the expected calibration error (ECE) before and after it.

The temperature is fitted on the validation scans together with their re-acquisition
variants (`edge.acquisition.reacquisitions`). A model that is right on every clean
validation scan would otherwise get T < 1, i.e. be made even more confident, while its real
failure is on scans from other sources and devices.
"""

from __future__ import annotations

import math

import numpy as np

from lungcnn.edge.trust.temperature import PROB_FLOOR, apply_temperature

ECE_BINS = 15
TEMPERATURE_RANGE = (0.25, 20.0)


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Weighted mean |accuracy - confidence| over equal-width confidence bins."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray, t: float) -> float:
    calibrated = apply_temperature(probabilities, t)
    return float(-np.log(calibrated[np.arange(len(labels)), labels]).mean())


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T minimising the NLL of softmax(log p / T): golden-section search on log T."""
    labels = np.asarray(labels, dtype=int)
    low, high = (math.log(v) for v in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2

    def loss(log_t: float) -> float:
        return negative_log_likelihood(probabilities, labels, math.exp(log_t))

    a, b = low, high
    for _ in range(60):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if loss(c) <= loss(d):
            b = d
        else:
            a = c
    return float(math.exp((a + b) / 2))


def calibration_section(blocks: np.ndarray, val_labels: np.ndarray, temperature: float) -> dict:
    """The manifest's "calibration": the temperature and the ECE before and after it, on the
    validation scans and on their re-acquisition variants (`blocks`: (scans, 1 + variants,
    classes) probabilities)."""
    calibrated = apply_temperature(blocks, temperature)
    classes = blocks.shape[2]
    variant_labels = np.repeat(val_labels, blocks.shape[1] - 1)
    return {
        "method": "temperature on log-probabilities, fitted on validation + its acquisition "
        "variants (NLL)",
        "temperature": round(temperature, 4),
        "prob_floor": PROB_FLOOR,
        "ece_bins": ECE_BINS,
        "ece_val_before": expected_calibration_error(blocks[:, 0], val_labels),
        "ece_val_after": expected_calibration_error(calibrated[:, 0], val_labels),
        "ece_val_variants_before": expected_calibration_error(
            blocks[:, 1:].reshape(-1, classes), variant_labels),
        "ece_val_variants_after": expected_calibration_error(
            calibrated[:, 1:].reshape(-1, classes), variant_labels),
        "val_files": len(val_labels),
    }


def ece_on_test(probabilities: np.ndarray, labels: np.ndarray, temperature: float) -> dict:
    """ECE on the test split before and after the temperature: reported, never fitted on."""
    return {
        "ece_test_before": expected_calibration_error(probabilities, labels),
        "ece_test_after": expected_calibration_error(
            apply_temperature(probabilities, temperature), labels),
    }
