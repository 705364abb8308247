"""The site acceptance report of `edge-classify validate`: how a model does on a site's own
labelled scans, as the device answers them (`Classifier.classify`, trust flags included).

Accuracy, per-class recall, precision and one-vs-rest accuracy with 95% Wilson intervals,
the confusion matrix, calibration (ECE and the reliability diagram's bins), flag rates and
the accuracy of accepted answers against all answers, the risk-coverage curve, and a
plain-language verdict with its criteria. Only numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lungcnn.edge.errors import NOTICE
from lungcnn.edge.trust import FLAG_OK, FLAG_OUT_OF_DISTRIBUTION, FLAG_UNCERTAIN
from lungcnn.edge.trust.temperature import ECE_BINS, binned_calibration_error, reliability_bins

Z_95 = 1.959964
# The verdict: every class the site has must be recognised at least this often...
MIN_RECALL = 0.80
# ... and its 95% interval must not reach below this, or the verdict is inconclusive.
MIN_RECALL_LOWER = 0.60
CRITERIA = (f"fit: every class the site has is recognised with recall >= {MIN_RECALL:.2f} "
            f"and the lower end of its 95% interval >= {MIN_RECALL_LOWER:.2f}; inconclusive: "
            f"recall >= {MIN_RECALL:.2f} but too few scans to be sure; not fit: some class "
            f"has recall < {MIN_RECALL:.2f}")


@dataclass(frozen=True)
class Outcome:
    """The device's answer on one labelled site scan."""

    truth: int
    predicted: int
    confidence: float  # calibrated probability of `predicted`
    flag: str


def wilson(successes: int, n: int) -> dict:
    """The proportion and its 95% Wilson score interval (None values when n is 0)."""
    if n == 0:
        return {"value": None, "low": None, "high": None, "n": 0}
    p = successes / n
    denominator = 1 + Z_95**2 / n
    centre = (p + Z_95**2 / (2 * n)) / denominator
    half = Z_95 * math.sqrt(p * (1 - p) / n + Z_95**2 / (4 * n * n)) / denominator
    return {"value": p, "low": max(0.0, centre - half), "high": min(1.0, centre + half), "n": n}


def site_report(outcomes: Sequence[Outcome], class_names: Sequence[str]) -> dict:
    """Every figure of the acceptance report (the scans that could be read)."""
    truth = np.array([o.truth for o in outcomes], dtype=int)
    predicted = np.array([o.predicted for o in outcomes], dtype=int)
    confidence = np.array([o.confidence for o in outcomes], dtype=np.float64)
    flags = np.array([o.flag for o in outcomes])
    right = truth == predicted
    accepted = flags == FLAG_OK
    bins = reliability_bins(confidence, right)
    report = {
        "notice": NOTICE,
        "scans": len(outcomes),
        "accuracy": wilson(int(right.sum()), len(right)),
        "per_class": _per_class(truth, predicted, class_names),
        "confusion": {"rows": "true class", "columns": "predicted class",
                      "classes": list(class_names),
                      "matrix": _confusion(truth, predicted, len(class_names))},
        "calibration": {"ece": binned_calibration_error(bins), "bins": ECE_BINS,
                        "reliability": [{"scans": n, "confidence": c, "accuracy": a}
                                        for n, c, a in bins]},
        "flags": {flag: float(np.mean(flags == flag)) for flag in
                  (FLAG_OK, FLAG_UNCERTAIN, FLAG_OUT_OF_DISTRIBUTION)},
        "accepted": wilson(int(right[accepted].sum()), int(accepted.sum())),
        "risk_coverage": risk_coverage(confidence, right),
    }
    report["verdict"] = verdict(report["per_class"])
    return report


def _per_class(truth: np.ndarray, predicted: np.ndarray, class_names: Sequence[str]) -> dict:
    rows = {}
    for label, name in enumerate(class_names):
        actual, called = truth == label, predicted == label
        hits = int((actual & called).sum())
        rows[name] = {"scans": int(actual.sum()),
                      "recall": wilson(hits, int(actual.sum())),
                      "precision": wilson(hits, int(called.sum())),
                      "accuracy": wilson(int((actual == called).sum()), len(truth))}
    return rows


def _confusion(truth: np.ndarray, predicted: np.ndarray, classes: int) -> list[list[int]]:
    matrix = np.zeros((classes, classes), dtype=int)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix.tolist()


def cumulative_risk(right: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The share of wrong answers among the k most trusted (highest `score` first, ties in
    their order), for k = 1 ... n: the risk-coverage curve, whose mean is its area."""
    ordered = np.asarray(right, dtype=bool)[np.argsort(-np.asarray(score), kind="stable")]
    return np.cumsum(~ordered) / np.arange(1, len(ordered) + 1)


def risk_coverage(confidence: np.ndarray, right: np.ndarray) -> dict:
    """Answers kept from the most confident down: at each coverage (share kept), the risk
    (share of the kept answers that are wrong); and the area under that curve."""
    risk = cumulative_risk(right, confidence)
    coverage = np.arange(1, len(risk) + 1) / max(len(risk), 1)
    return {"coverage": [round(float(c), 4) for c in coverage],
            "risk": [round(float(r), 4) for r in risk],
            "area": float(risk.mean()) if len(risk) else None}


def verdict(per_class: dict) -> dict:
    """"fit", "inconclusive" or "not fit", in plain language, with the criteria."""
    present = {name: row["recall"] for name, row in per_class.items() if row["scans"]}
    failing = {name: r for name, r in present.items() if r["value"] < MIN_RECALL}
    unsure = {name: r for name, r in present.items() if r["low"] < MIN_RECALL_LOWER}
    if failing:
        decision, shown = "not fit", failing
        text = "not fit for this site: " + "; ".join(
            f"{name} recall {_interval(r)}" for name, r in failing.items())
    elif unsure:
        decision, shown = "inconclusive", unsure
        text = ("inconclusive: too few scans to be sure of " + "; ".join(
            f"{name} recall {_interval(r)}" for name, r in unsure.items())
            + "; label more scans of the site")
    else:
        decision, shown = "fit", present
        text = "fit for this site: " + "; ".join(
            f"{name} recall {_interval(r)}" for name, r in present.items())
    return {"decision": decision, "text": text, "criteria": CRITERIA,
            "classes": {name: r["value"] for name, r in shown.items()}}


def _interval(proportion: dict) -> str:
    return f"{proportion['value']:.2f} ({proportion['low']:.2f}-{proportion['high']:.2f})"
