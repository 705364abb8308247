"""Prediction set: the labels the model cannot rule out at a stated level.

Every label whose calibrated probability is at least the manifest's "min_probability" is in
the set. That minimum is calibrated (split conformal) on held-out sources by `lungcnn loso`
and written by `lungcnn calibrate --loso`, so that the set holds the true label of about
`level` of the scans from a hospital the model never saw (where its class and age group were
in training). A set of exactly one label is an answer; a set of several labels is uncertain
and the reason names them; an empty set (no label likely enough) is uncertain too."""

from __future__ import annotations

from dataclasses import dataclass

from lungcnn.edge.manifest import ManifestError
from lungcnn.edge.trust.signal import FLAG_UNCERTAIN, Evidence, Signal, Verdict, number


@dataclass(frozen=True)
class PredictionSetSettings:
    min_probability: float  # a label with at least this calibrated probability is in the set
    level: float  # share of held-out scans whose set held the true label, as calibrated
    labels: tuple[str, ...]  # the model's class names


def prediction_set_settings(calibration: dict, trust: dict,
                            class_names: tuple[str, ...]) -> PredictionSetSettings | None:
    fields = trust.get("prediction_set") if trust else None
    if fields is None:
        return None
    name = "trust prediction_set"
    if not isinstance(fields, dict):
        raise ManifestError(f"{name} must be an object")
    missing = {"min_probability", "level"} - set(fields)
    if missing:
        raise ManifestError(f"{name} lacks {', '.join(sorted(missing))}")
    return PredictionSetSettings(
        min_probability=number(fields["min_probability"], f"{name} min_probability",
                               low=0.0, high=1.0, low_open=True),
        level=number(fields["level"], f"{name} level", low=0.0, high=1.0, low_open=True),
        labels=tuple(class_names),
    )


def check(evidence: Evidence, settings: PredictionSetSettings) -> Verdict:
    probabilities = evidence.calibrated[0]
    members = [name for name, p in zip(settings.labels, probabilities)
               if p >= settings.min_probability]
    values = {"prediction_set": members}
    if len(members) == 1:
        return Verdict(values)
    limit = (f"calibrated probability at least {settings.min_probability:.2f}, the "
             f"{settings.level:.0%} prediction set calibrated on held-out hospitals")
    if not members:
        return Verdict(values, f"no label is likely enough to answer: none has {limit}")
    return Verdict(values, f"could be {' or '.join(members)}: each has {limit}")


SIGNAL = Signal("prediction_set", FLAG_UNCERTAIN, prediction_set_settings, check)
