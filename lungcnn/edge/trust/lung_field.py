"""Lung-field signal: under contract 2 the model sees the lung field the segmenter found. When
the segmenter finds no plausible lungs (too small, too large, too narrow: limits in the
segmenter's manifest), the scan is classified on the whole image and flagged
`out_of_distribution` with the reason: the answer does not come from the lungs.

On whenever the model's contract has a lung field; nothing to fit.
"""

from __future__ import annotations

from lungcnn.edge.trust.signal import FLAG_OUT_OF_DISTRIBUTION, Evidence, Signal, Verdict

# The reason's prefix, read by the reports that count these flags.
REASON_PREFIX = "no plausible lung fields"


def _settings(calibration: dict, trust: dict, classes: int | None) -> bool:
    return True


def check(evidence: Evidence, settings: bool) -> Verdict:
    field = evidence.lung_field
    if field is None or field.problem is None:
        return Verdict({})
    return Verdict({}, f"{REASON_PREFIX} ({field.problem}): classified on the whole scan")


SIGNAL = Signal("lung_field", FLAG_OUT_OF_DISTRIBUTION, _settings, check)
