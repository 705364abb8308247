"""Fitting the temperature of calibrated confidence (`edge.trust.temperature`, which holds
the fit itself and the ECE) on a run's validation scans, and reporting the expected
calibration error before and after it.

The temperature is fitted on the validation scans together with their re-acquisition
variants (`edge.acquisition.reacquisitions`). A model that is right on every clean
validation scan would otherwise get T < 1, i.e. be made even more confident, while its real
failure is on scans from other sources and devices.
"""

from __future__ import annotations

import numpy as np

from lungcnn.edge.trust.temperature import (  # noqa: F401 - fit_temperature: calibrate's API
    ECE_BINS,
    PROB_FLOOR,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
)


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
