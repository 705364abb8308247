"""The prediction-set signal: read from the manifest, checked on load, and its verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from lungcnn.edge.manifest import ManifestError
from lungcnn.edge.trust import FLAG_OK, FLAG_UNCERTAIN, TrustSettings, evidence_of, judge
from lungcnn.edge.trust.prediction_set import PredictionSetSettings, prediction_set_settings
from lungcnn.edge.trust.stability import StabilitySettings

LABELS = ["Covid", "Normal", "Viral Pneumonia"]


def section(**changes) -> dict:
    return {"min_probability": 0.2, "level": 0.9, **changes}


def judged(probabilities, settings: PredictionSetSettings | None):
    signals = {"stability": StabilitySettings()}
    if settings is not None:
        signals["prediction_set"] = settings
    trust = TrustSettings(signals=signals, fitted=True)
    evidence = evidence_of(np.zeros((8, 8, 1), np.uint8), 0.0, np.array([probabilities]),
                           (), None, trust)
    return judge(evidence, trust)


def read(prediction_set):
    return prediction_set_settings({"temperature": 1.0}, {"prediction_set": prediction_set},
                                   tuple(LABELS))


def test_the_manifest_section_is_read_and_is_optional():
    assert read(section()) == PredictionSetSettings(0.2, 0.9, tuple(LABELS))
    assert prediction_set_settings({"temperature": 1.0}, {"min_confidence": 0.5},
                                   tuple(LABELS)) is None


@pytest.mark.parametrize("bad, message", [
    ("yes", "must be an object"),
    (section(min_probability=0.0), "min_probability 0 is not > 0"),
    (section(min_probability=1.5), "min_probability 1.5 is not in"),
    (section(level=True), "level must be a number"),
    ({"min_probability": 0.2}, "lacks level"),
])
def test_a_damaged_section_is_a_manifest_error(bad, message):
    with pytest.raises(ManifestError, match=message):
        read(bad)


def test_a_single_label_set_is_an_answer():
    result = judged([0.9, 0.08, 0.02], PredictionSetSettings(0.2, 0.9, tuple(LABELS)))
    assert result.flag == FLAG_OK and result.to_record()["prediction_set"] == ["Covid"]


def test_a_set_of_two_labels_is_uncertain_and_names_them():
    result = judged([0.55, 0.4, 0.05], PredictionSetSettings(0.2, 0.9, tuple(LABELS)))
    assert result.flag == FLAG_UNCERTAIN
    assert result.reason.startswith("could be Covid or Normal")
    assert "90% prediction set" in result.reason
    assert result.to_record()["prediction_set"] == ["Covid", "Normal"]


def test_an_empty_set_is_uncertain():
    result = judged([0.4, 0.3, 0.3], PredictionSetSettings(0.5, 0.9, tuple(LABELS)))
    assert result.flag == FLAG_UNCERTAIN and result.reason.startswith("no label")
    assert result.to_record()["prediction_set"] == []


def test_without_the_section_the_record_has_no_set():
    result = judged([0.55, 0.4, 0.05], None)
    assert result.flag == FLAG_OK and result.to_record()["prediction_set"] is None
