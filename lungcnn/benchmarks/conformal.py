"""Conformal prediction sets calibrated across held-out sources.

A prediction set holds every label whose calibrated probability is at least
`min_probability`; the split-conformal choice of it (score 1 - probability of the true
label) makes the set hold the true label of at least `LEVEL` of new scans that are
exchangeable with the calibration scans. Here the calibration scans are held-out scans
(`lungcnn loso` records) of the *other* sources, covered ones only (their class and age group
were in training; an open-set scan has no right label in the model's world), so the level is
checked where it matters: on a source the model never saw. Nested: each fold's level comes
from the other folds; the level from every fold is the one a model trained on every source
gets (`lungcnn calibrate --loso`).
"""

from __future__ import annotations

import math

import numpy as np

from lungcnn.benchmarks.loso_report import ok_records
from lungcnn.edge.contract import CLASS_NAMES
from lungcnn.edge.trust.temperature import apply_temperature

LEVEL = 0.9  # share of covered held-out scans whose set should hold the true label
OTHER_LEVELS = (0.8, 0.95)  # reported pooled beside it, to show the trade-off


def has_probabilities(folds: dict[str, dict]) -> bool:
    """Whether every answered held-out record carries its class probabilities (results of
    `lungcnn loso` before they were recorded do not)."""
    return carries(folds, "probabilities")


def carries(folds: dict[str, dict], field: str) -> bool:
    """Whether every answered held-out record has `field` (older results lack some)."""
    return all(field in r for fold in folds.values() for r in ok_records(fold))


def calibrated(fold: dict) -> np.ndarray:
    """(scans, classes) calibrated probabilities of the fold's ok records."""
    raw = np.array([[r["probabilities"][name] for name in CLASS_NAMES]
                    for r in ok_records(fold)], dtype=np.float64).reshape(-1, len(CLASS_NAMES))
    return apply_temperature(raw, fold["thresholds"].get("temperature") or 1.0)


def min_probability(folds: list[dict], level: float = LEVEL) -> float:
    """The smallest calibrated probability a label needs to enter the set, from the covered
    held-out scans of `folds` (split conformal, finite-sample corrected)."""
    scores = np.concatenate([_true_scores(fold) for fold in folds])
    rank = math.ceil((len(scores) + 1) * level)
    if rank > len(scores):
        return 0.0  # too few covered scans for this level: every label stays in the set
    return float(1.0 - np.sort(scores)[rank - 1])


def nested_levels(folds: dict[str, dict], level: float = LEVEL) -> dict[str, float]:
    """Per fold: the minimum probability calibrated on the other folds."""
    return {source: min_probability([f for s, f in folds.items() if s != source], level)
            for source in folds}


def conformal_sets(fold: dict, threshold: float) -> np.ndarray:
    """(scans, classes) membership of each label in each ok record's prediction set."""
    return calibrated(fold) >= threshold


def conformal_report(folds: dict[str, dict], level: float = LEVEL) -> dict:
    """Coverage and set sizes per held-out fold (nested) and pooled, the level fitted on
    every fold, and the pooled figures at the other levels."""
    return {**_nested(folds, level),
            "other_levels": {str(other): _nested(folds, other)["pooled"]
                             for other in OTHER_LEVELS}}


def _nested(folds: dict[str, dict], level: float) -> dict:
    per_fold, pooled = {}, []
    for source, threshold in nested_levels(folds, level).items():
        sets = conformal_sets(folds[source], threshold)
        rows = _rows(folds[source], sets)
        per_fold[source] = {"min_probability": threshold, **_summary(rows)}
        pooled += rows
    return {"level": level, "per_fold": per_fold, "pooled": _summary(pooled),
            "min_probability_all_folds": min_probability(list(folds.values()), level)}


def _rows(fold: dict, sets: np.ndarray) -> list[tuple[bool, bool, int]]:
    """(covered, true label in the set, set size) of each ok record."""
    return [(bool(r["covered"]), bool(row[CLASS_NAMES.index(r["label"])]), int(row.sum()))
            for r, row in zip(ok_records(fold), sets)]


def _summary(rows: list[tuple[bool, bool, int]]) -> dict:
    covered = [row for row in rows if row[0]]
    return {
        "n": len(rows),
        "covered_n": len(covered),
        "coverage_covered": _mean([row[1] for row in covered]),
        "coverage_all": _mean([row[1] for row in rows]),
        "mean_set_size": _mean([row[2] for row in rows]),
        "mean_set_size_covered": _mean([row[2] for row in covered]),
        "singletons": _mean([row[2] == 1 for row in rows]),
        "empty": _mean([row[2] == 0 for row in rows]),
    }


def _true_scores(fold: dict) -> np.ndarray:
    records = ok_records(fold)
    probabilities = calibrated(fold)
    return np.array([1.0 - p[CLASS_NAMES.index(r["label"])]
                     for r, p in zip(records, probabilities) if r["covered"]])


def _mean(values: list) -> float | None:
    return float(np.mean(values)) if values else None
