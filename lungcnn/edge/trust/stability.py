"""Stability: the calibrated confidence of the label, averaged over the scan and a few slight
re-acquisitions of it (`edge.acquisition.reacquisitions`: downscaled and re-encoded, blurred,
other contrast, reframed). Below the manifest's "min_confidence" the scan is uncertain: the
model is unsure, or changes its mind when the same scan is re-acquired."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungcnn.edge.manifest import ManifestError
from lungcnn.edge.trust.signal import FLAG_UNCERTAIN, Evidence, Signal, Verdict, boolean, number

# Share of clean validation scans the confidence threshold may turn away on its own
# (`lungcnn calibrate`; `edge-classify adapt` on out-of-fold predictions).
CONFIDENCE_ABSTAIN_BUDGET = 0.03


@dataclass(frozen=True)
class StabilitySettings:
    min_confidence: float = 0.0
    check_variants: bool = True  # also run the re-acquisitions, not only the scan


def stability_settings(calibration: dict, trust: dict,
                       class_names: tuple[str, ...]) -> StabilitySettings:
    """A fitted trust section's threshold; a model without one is still checked for stability
    (threshold 0: the confidence is reported, nothing is flagged)."""
    if not trust:
        return StabilitySettings()
    for key in ("min_confidence", "check_variants"):
        if key not in trust:
            raise ManifestError(f"trust has no {key}")
    return StabilitySettings(
        min_confidence=number(trust["min_confidence"], "trust min_confidence", low=0.0,
                              high=1.0),
        check_variants=boolean(trust["check_variants"], "trust check_variants"),
    )


def stable_confidence(calibrated: np.ndarray, label: int) -> float:
    """Calibrated probability of `label`, averaged over the scan and its variants: low when
    the model is unsure or when a slight re-acquisition changes its mind."""
    return float(np.mean(calibrated[:, label]))


def check(evidence: Evidence, settings: StabilitySettings) -> Verdict:
    label = evidence.label
    variant_labels = {name: int(np.argmax(p))
                      for name, p in zip(evidence.variant_names, evidence.calibrated[1:])}
    stability = stable_confidence(evidence.calibrated, label)
    values = {"stability": stability, "variant_labels": variant_labels}
    if stability >= settings.min_confidence:
        return Verdict(values)
    changed = [name.replace("_", " ") for name, other in variant_labels.items() if other != label]
    reason = (f"unstable: the label changes when the scan is re-acquired as "
              f"{', '.join(changed)}" if changed else "low calibrated confidence")
    reason += f" (confidence over variants {stability:.2f} < {settings.min_confidence:.2f})"
    return Verdict(values, reason)


SIGNAL = Signal("stability", FLAG_UNCERTAIN, stability_settings, check)
