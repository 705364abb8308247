"""Whether to trust one prediction: calibrated confidence, stability, and an X-ray gate.

Every scan gets one of three flags, with a one-line reason:
  "ok"                  the checks below passed;
  "out_of_distribution" the image is unlike the training scans (colour photo, document,
                        blank, no chest layout, far less fine detail than any training scan:
                        `trust.gate`), or the model's own features of it are far from those
                        of the training scans of the class it predicts
                        (`trust.feature_distance`): the model was never shown such an input,
                        so its answer means nothing;
  "uncertain"           a chest X-ray, but the calibrated confidence (`trust.temperature`),
                        averaged over the scan and a few slight re-acquisitions of it
                        (`trust.stability`), is below the threshold: the model is unsure, or
                        changes its mind when the same scan is re-acquired.

One module per signal, listed in `trust.registry`; `trust.decision` runs them. Thresholds
come from the model's manifest ("calibration" and "trust" sections, read by
`trust.settings`, written by `lungcnn calibrate` from training and validation scans only).
Only numpy and Pillow.
"""

from lungcnn.edge.trust.decision import TRUST_FIELDS, Assessment, assess, evidence_of, judge
from lungcnn.edge.trust.feature_distance import FeatureDistance
from lungcnn.edge.trust.gate import GATE_FEATURES, TEMPLATE_SIDE, image_features
from lungcnn.edge.trust.settings import TrustSettings
from lungcnn.edge.trust.signal import FLAG_OK, FLAG_OUT_OF_DISTRIBUTION, FLAG_UNCERTAIN
from lungcnn.edge.trust.stability import stable_confidence
from lungcnn.edge.trust.temperature import PROB_FLOOR, apply_temperature

__all__ = [
    "FLAG_OK", "FLAG_OUT_OF_DISTRIBUTION", "FLAG_UNCERTAIN", "GATE_FEATURES", "PROB_FLOOR",
    "TEMPLATE_SIDE", "TRUST_FIELDS", "Assessment", "FeatureDistance", "TrustSettings",
    "apply_temperature", "assess", "evidence_of", "image_features", "judge",
    "stable_confidence",
]
