"""Leave-one-source-out figures: accuracy on covered scans, flags on wrong and open-set
answers, and trust thresholds chosen on the held-out sources.

Thresholds are chosen as a rule relative to each fold's own calibration, so that the rule
carries over to a model trained on every source: a scan is flagged when the X-ray gate
fails, when its feature distance exceeds `distance_factor` times the fitted threshold, or
when its stable confidence is below `min_confidence`. A rule only tightens what calibration
fitted on validation (factor at most 1, confidence at least the fitted one), so no check is
ever switched off. The rule maximises the share of wrong
answers flagged with at most `MAX_RIGHT_FLAGGED` of right answers flagged. Its held-out
figures are nested: each fold is scored with the rule chosen on the other folds only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungcnn.edge.trust.gate import REASON_PREFIX as GATE_REASON_PREFIX
from lungcnn.edge.trust.lung_field import REASON_PREFIX as LUNG_FIELD_REASON_PREFIX

MAX_RIGHT_FLAGGED = 0.25
DISTANCE_FACTORS = tuple(np.round(np.arange(0.5, 1.001, 0.025), 3))
MIN_CONFIDENCES = tuple(np.round(np.arange(0.0, 0.96, 0.01), 2))


@dataclass(frozen=True)
class Rule:
    distance_factor: float
    min_confidence: float

    def to_json(self) -> dict:
        return {"distance_factor": float(self.distance_factor),
                "min_confidence": float(self.min_confidence)}


def ok_records(fold: dict) -> list[dict]:
    """The fold's held-out records the device answered (not the files it could not read)."""
    return [r for r in fold["records"] if r["status"] == "ok"]


def fold_summary(fold: dict) -> dict:
    """Accuracy (covered scans) and flag rates of one fold's device answers."""
    records = ok_records(fold)
    right = np.array([r["predicted"] == r["label"] for r in records], dtype=bool)
    flagged = np.array([r["flag"] != "ok" for r in records], dtype=bool)
    covered = np.array([r["covered"] for r in records], dtype=bool)
    return {
        "n": len(records),
        "failed": len(fold["records"]) - len(records),
        "covered": share_block(right[covered], flagged[covered]),
        "open_set": share_block(right[~covered], flagged[~covered]),
        "all": share_block(right, flagged),
        "by_class": _by_class(records, right, flagged),
    }


def flags_under(rule: Rule, fold: dict) -> tuple[np.ndarray, np.ndarray]:
    """(right, flagged) of a fold's ok records under `rule`."""
    records = ok_records(fold)
    limit = (fold["thresholds"]["feature_distance"] or np.inf) * rule.distance_factor
    confidence = max(rule.min_confidence, fold["thresholds"]["min_confidence"] or 0.0)
    right = np.array([r["predicted"] == r["label"] for r in records], dtype=bool)
    flagged = np.array([
        refused(r) or (r["feature_distance"] is not None and r["feature_distance"] > limit)
        or r["stable_confidence"] < confidence
        for r in records
    ], dtype=bool)
    return right, flagged


def choose_rule(folds: list[dict]) -> Rule:
    """The rule flagging the most wrong answers of `folds` (pooled) with at most
    MAX_RIGHT_FLAGGED of the right ones flagged; ties: the fewest right answers flagged."""
    best, best_key = Rule(1.0, 0.0), None
    for factor in DISTANCE_FACTORS:
        for confidence in MIN_CONFIDENCES:
            rule = Rule(factor, confidence)
            right, flagged = _pooled(rule, folds)
            right_flagged = _share(flagged[right])
            if right_flagged > MAX_RIGHT_FLAGGED:
                continue
            key = (_share(flagged[~right]), -right_flagged)
            if best_key is None or key > best_key:
                best, best_key = rule, key
    return best


def nested_trust(folds: dict[str, dict]) -> dict:
    """Per fold: the rule chosen on the other folds and its flags on this one; pooled."""
    per_fold, rights, flags = {}, [], []
    for source, fold in folds.items():
        rule = choose_rule([f for s, f in folds.items() if s != source])
        right, flagged = flags_under(rule, fold)
        per_fold[source] = {"rule": rule.to_json(), **share_block(right, flagged)}
        rights.append(right)
        flags.append(flagged)
    pooled = share_block(np.concatenate(rights), np.concatenate(flags))
    return {"per_fold": per_fold, "pooled": pooled,
            "rule_on_all_folds": choose_rule(list(folds.values())).to_json()}


def loso_report(result: dict) -> dict:
    folds = result["folds"]
    return {
        "folds": {source: fold_summary(fold) for source, fold in folds.items()},
        "trained_on": {source: fold["trained_on"] for source, fold in folds.items()},
        "thresholds": {source: fold["thresholds"] for source, fold in folds.items()},
        "nested_trust": nested_trust(folds) if len(folds) > 1 else None,
    }


def _pooled(rule: Rule, folds: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [flags_under(rule, fold) for fold in folds]
    return (np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]))


def share_block(right: np.ndarray, flagged: np.ndarray) -> dict:
    """Accuracy of all and of accepted answers, and the flag rates of right and wrong."""
    accepted = ~flagged
    return {
        "n": int(len(right)),
        "accuracy": _share(right),
        "accepted": int(accepted.sum()),
        "accepted_accuracy": _share(right[accepted]),
        "wrong": int((~right).sum()),
        "wrong_flagged": _share(flagged[~right]),
        "right_flagged": _share(flagged[right]),
    }


def _by_class(records: list[dict], right: np.ndarray, flagged: np.ndarray) -> dict:
    report = {}
    for key in sorted({(r["label"], r["age_group"]) for r in records}):
        rows = np.array([(r["label"], r["age_group"]) == key for r in records], dtype=bool)
        predicted = [r["predicted"] for r, row in zip(records, rows) if row]
        report["/".join(key)] = {
            **share_block(right[rows], flagged[rows]),
            "predicted": {name: predicted.count(name) for name in sorted(set(predicted))},
        }
    return report


def refused(record: dict) -> bool:
    """Flagged by a check no rule changes: the X-ray gate (not a chest X-ray) or the lung
    field (contract 2: no plausible lungs, so the answer does not come from them)."""
    return (record["flag"] == "out_of_distribution"
            and (record.get("reason") or "").startswith((GATE_REASON_PREFIX,
                                                          LUNG_FIELD_REASON_PREFIX)))


def _share(mask: np.ndarray) -> float | None:
    return float(np.mean(mask)) if len(mask) else None
