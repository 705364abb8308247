"""Fitting the stability threshold (`edge.trust.stability`): the least calibrated confidence,
averaged over a scan and its re-acquisitions, that a scan may have and still be trusted."""

from __future__ import annotations

import numpy as np

from lungcnn.edge.trust.stability import CONFIDENCE_ABSTAIN_BUDGET, stable_confidence

RULE = (f"min_confidence: the {CONFIDENCE_ABSTAIN_BUDGET:.0%} quantile, on clean validation "
        "scans, of the calibrated confidence averaged over scan and variants")


def stability_fields(calibrated: np.ndarray) -> dict:
    """`calibrated`: (validation scans, 1 + variants, classes) calibrated probabilities."""
    stability = np.array([stable_confidence(block, int(np.argmax(block[0])))
                          for block in calibrated])
    minimum = float(np.quantile(stability, CONFIDENCE_ABSTAIN_BUDGET, method="lower"))
    return {"min_confidence": round(minimum, 4), "check_variants": True}
