"""Calibrated confidence: the model's probabilities with a temperature applied.

The temperature comes from the manifest's "calibration" section (`lungcnn calibrate`); a model
without one keeps its probabilities (T = 1)."""

from __future__ import annotations

import numpy as np

from lungcnn.edge.manifest import ManifestError
from lungcnn.edge.trust.signal import number

# Probabilities are clipped here before the temperature is applied: just below the int8 output
# step (1/256), so a float model and its int8 conversion are calibrated alike.
PROB_FLOOR = 1e-3


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
