"""The decision for one scan: run the model once on the scan and its re-acquisitions, apply
the temperature, then ask every registered signal (`trust.registry`, most severe first); the
first failing signal decides the flag and its one-line reason."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lungcnn.edge.acquisition import reacquisitions
from lungcnn.edge.decode import ScanError
from lungcnn.edge.lungfield import LungField
from lungcnn.edge.model import Model
from lungcnn.edge.trust.registry import SIGNALS
from lungcnn.edge.trust.settings import TrustSettings
from lungcnn.edge.trust.signal import FLAG_OK, Evidence
from lungcnn.edge.trust.temperature import apply_temperature

# The fields of `Assessment.to_record`, in order: what a result line gains from trust.
TRUST_FIELDS = ("flag", "reason", "calibrated_confidence", "stable_confidence",
                "feature_distance")
_PASSED = "passed the X-ray gate; confident and stable under re-acquisition"
_UNFITTED = "no calibration or X-ray gate in the model manifest: only stability checked"


@dataclass(frozen=True)
class Assessment:
    flag: str
    reason: str
    label: int
    confidence: float  # calibrated probability of `label`
    stability: float  # that probability averaged over the scan and its variants
    probabilities: np.ndarray  # calibrated
    raw_probabilities: np.ndarray
    variant_labels: dict[str, int]
    features: dict[str, float]  # the gate's image statistics
    feature_distance: float | None = None
    model_input: np.ndarray | None = field(default=None, repr=False)
    lung_field: LungField | None = None  # what the model input was cropped to (contract 2)

    def to_record(self) -> dict:
        """Flat fields for a result line (JSON or CSV): the flag, its reason, the
        calibrated confidence of the label (also averaged over the re-acquired variants) and
        the distance to the training scans in feature space (None without that check)."""
        distance = self.feature_distance
        return {
            "flag": self.flag,
            "reason": self.reason,
            "calibrated_confidence": round(self.confidence, 4),
            "stable_confidence": round(self.stability, 4),
            "feature_distance": (None if distance is None or not np.isfinite(distance)
                                 else round(distance, 3)),
        }


def assess(model: Model, gray: np.ndarray, settings: TrustSettings,
           colour: float = 0.0) -> Assessment:
    """Assess the decoded 2-D uint8 scan `gray` (`edge.decode.read_grayscale`) with
    `model`: its input and re-acquisitions go through the model as one batch. `colour` is
    the colourfulness of the file it came from."""
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ScanError("assess needs a 2-D uint8 grayscale scan")
    prepared = model.prepare(gray)
    model_input = prepared.model_input
    variants = reacquisitions(model_input) if settings.check_variants else {}
    raw, features = model.run(np.stack([model_input, *variants.values()]))
    return judge(evidence_of(model_input, colour, raw, tuple(variants),
                             None if features is None else features[0], settings,
                             prepared.lung_field), settings)


def evidence_of(model_input: np.ndarray, colour: float, raw: np.ndarray,
                variant_names: tuple[str, ...], features: np.ndarray | None,
                settings: TrustSettings, lung_field: LungField | None = None) -> Evidence:
    """The evidence of one scan from the model's outputs on it (`raw`: the scan's row, then
    one per variant; `features`: the scan's feature vector)."""
    raw = np.asarray(raw, dtype=np.float64)
    calibrated = apply_temperature(raw, settings.temperature)
    return Evidence(model_input, float(colour), raw, calibrated, variant_names, features,
                    int(np.argmax(calibrated[0])), lung_field)


def judge(evidence: Evidence, settings: TrustSettings) -> Assessment:
    """Every signal that is on measures the scan; the first that fails decides the flag."""
    values: dict = {}
    flag, reason = FLAG_OK, _PASSED if settings.fitted else _UNFITTED
    for signal in SIGNALS:
        signal_settings = settings.of(signal.name)
        if signal_settings is None:
            continue
        verdict = signal.check(evidence, signal_settings)
        values.update(verdict.values)
        if verdict.failure is not None and flag == FLAG_OK:
            flag, reason = signal.flag, verdict.failure
    label, calibrated = evidence.label, evidence.calibrated
    return Assessment(
        flag=flag,
        reason=reason,
        label=label,
        confidence=float(calibrated[0, label]),
        stability=values.get("stability", float(calibrated[0, label])),
        probabilities=calibrated[0],
        raw_probabilities=evidence.raw[0],
        variant_labels=values.get("variant_labels", {}),
        features=values.get("features", {}),
        feature_distance=values.get("feature_distance"),
        model_input=evidence.model_input,
        lung_field=evidence.lung_field,
    )
