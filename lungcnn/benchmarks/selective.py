"""Trust as selective prediction on held-out sources: for each trust rule, which answers it
accepts, and how wrong those are.

Input: the held-out records of `lungcnn loso` (each fold: the device's answer on every scan
of the source its model never saw). A rule ranks a fold's answers from most to least trusted
and flags some of them. Figures, pooled over folds, per fold and per class/age group:
  risk-coverage: error rate of the most trusted share of answers, for each share; AURC, its
                 area (the mean error over every accepted count; lower is better), with the
                 area of a perfect ranking of the same answers beside it;
  operating point: accuracy of all and of accepted answers, share of wrong and of right
                 answers flagged.
Rules that need a threshold get it nested: each fold is scored with the threshold chosen on
the other folds' held-out answers (most wrong answers flagged with at most
`MAX_RIGHT_FLAGGED` of the right ones). Today's rule (each fold's own `lungcnn calibrate`
flags) is the baseline. Every rule keeps the X-ray gate and the lung-field check
(`loso_report.refused`): a scan that fails them is flagged and ranked last, because it is not
a chest X-ray, or its answer does not come from the lungs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lungcnn.benchmarks.conformal import carries, conformal_sets, nested_levels
from lungcnn.benchmarks.loso_report import (
    MAX_RIGHT_FLAGGED,
    choose_rule,
    flags_under,
    ok_records,
    refused,
    share_block,
)
from lungcnn.edge.validate import cumulative_risk

COVERAGES = tuple(np.round(np.arange(0.05, 1.0001, 0.05), 2))


@dataclass(frozen=True)
class Scored:
    """One fold's ok answers as a rule sees them: right or wrong, trust score (higher is
    more trusted) and the flags at the rule's operating point."""

    right: np.ndarray
    score: np.ndarray
    flagged: np.ndarray


# A rule: (held-out folds by source, source) -> that fold's answers as the rule scores them.
Rule = Callable[[dict[str, dict], str], Scored]


def today(folds: dict[str, dict], source: str) -> Scored:
    """The flags each fold's own `lungcnn calibrate` raised; ranked by stable confidence."""
    records = ok_records(folds[source])
    flagged = np.array([r["flag"] != "ok" for r in records], dtype=bool)
    return _binary(records, flagged)


def nested_thresholds(folds: dict[str, dict], source: str) -> Scored:
    """Today's signals with the distance factor and minimum confidence chosen on the other
    folds (`loso_report.choose_rule`)."""
    rule = choose_rule([f for s, f in folds.items() if s != source])
    _, flagged = flags_under(rule, folds[source])
    return _binary(ok_records(folds[source]), flagged)


# (record, its fold) -> a trust score, or whether the record may be flagged at all
Score = Callable[[dict, dict], float]
Eligible = Callable[[dict, dict], bool]
# One fold's answers for a score rule: right, score, gate failed, may be flagged.
Scores = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def score_rule(value: Score, eligible: Eligible = lambda record, fold: True) -> Rule:
    """Flag an `eligible` answer whose score `value` is below a threshold chosen nested; the
    answers are ranked by that score."""
    def rule(folds: dict[str, dict], source: str) -> Scored:
        def scores(fold: dict) -> Scores:
            records = ok_records(fold)
            return (_right(records), np.array([value(r, fold) for r in records]),
                    _gate(records), np.array([eligible(r, fold) for r in records], dtype=bool))

        threshold = choose_threshold([scores(f) for s, f in folds.items() if s != source])
        right, score, gate, can_flag = scores(folds[source])
        return Scored(right, _gate_last(score, gate), gate | (can_flag & (score < threshold)))
    return rule


def distance_ratio(record: dict, fold: dict) -> float:
    """The feature distance over the fold's fitted threshold: infinite for an answer the
    device found infinitely far (a class without training scans: no finite distance is
    recorded), 0 for a model without the check."""
    distance = record.get("feature_distance")
    if distance is None:
        far = record["flag"] == "out_of_distribution" and not _gate([record])[0]
        return np.inf if far else 0.0
    return distance / (fold["thresholds"].get("feature_distance") or 1.0)


def nearest_differs(record: dict, fold: dict) -> bool:
    """The answer's features are nearest the training scans of another class."""
    return record["nearest_class"] is not None and record["nearest_class"] != record["predicted"]


def members_support(record: dict, fold: dict | None = None) -> float:
    """The ensemble members' mean probability of the answer's label (`benchmarks.ensemble`):
    low when the members, trained without this source and each without one more, disagree."""
    votes = [v[record["predicted"]] for v in record["member_probabilities"] if v is not None]
    return float(np.mean(votes)) if votes else 0.0


def conformal_rule(folds: dict[str, dict], source: str) -> Scored:
    """Flag a prediction set that does not hold exactly one label; the level is calibrated
    on the other folds' covered held-out scans (`benchmarks.conformal`)."""
    records = ok_records(folds[source])
    sets = conformal_sets(folds[source], nested_levels(folds)[source])
    flagged = _gate(records) | (sets.sum(axis=1) != 1)
    return _binary(records, flagged)


def nearest_class_differs(folds: dict[str, dict], source: str) -> Scored:
    """Flag an answer whose features are nearest the training scans of another class."""
    records = ok_records(folds[source])
    flagged = _gate(records) | np.array([nearest_differs(r, folds[source]) for r in records],
                                        dtype=bool)
    return _binary(records, flagged)


def either(*rules: Rule) -> Rule:
    """Flag what any of `rules` flags (signals added to one another, as on the device)."""
    def rule(folds: dict[str, dict], source: str) -> Scored:
        flagged = np.any([each(folds, source).flagged for each in rules], axis=0)
        return _binary(ok_records(folds[source]), flagged)
    return rule


BASELINE, DEVICE = "today (baseline)", "today, thresholds nested"
WITH_SETS = f"{DEVICE} + conformal set"
WITH_NEAREST = f"{DEVICE} + nearest class differs"
DISTANCE_IF_NEAREST = "feature distance, only when the nearest class differs"
MEMBERS, WITH_MEMBERS = "ensemble support", f"{DEVICE} + ensemble support"
RULES: dict[str, Rule] = {
    BASELINE: today,
    DEVICE: nested_thresholds,
    "calibrated confidence": score_rule(lambda record, fold: record["confidence"]),
    "stable confidence": score_rule(lambda record, fold: record["stable_confidence"]),
    "feature distance": score_rule(lambda record, fold: -distance_ratio(record, fold)),
    DISTANCE_IF_NEAREST: score_rule(lambda record, fold: -distance_ratio(record, fold),
                                    nearest_differs),
    "conformal set": conformal_rule,
    WITH_SETS: either(nested_thresholds, conformal_rule),
    "nearest class differs": nearest_class_differs,
    WITH_NEAREST: either(nested_thresholds, nearest_class_differs),
    MEMBERS: score_rule(members_support),
    WITH_MEMBERS: either(nested_thresholds, score_rule(members_support)),
}
# The record field a rule needs, for rules that results of older `lungcnn loso` runs lack.
NEEDS = {"conformal set": "probabilities", WITH_SETS: "probabilities",
         "nearest class differs": "nearest_class", WITH_NEAREST: "nearest_class",
         DISTANCE_IF_NEAREST: "nearest_class", MEMBERS: "member_probabilities",
         WITH_MEMBERS: "member_probabilities"}


def helps(selective: dict, name: str, baseline: str = DEVICE) -> bool:
    """Whether rule `name` does better than `baseline` on the held-out folds, nested: more
    wrong answers flagged (pooled) with at most MAX_RIGHT_FLAGGED of the right ones, and
    accepted answers more accurate than all answers on at least as many folds."""
    rules = selective["rules"]
    if name not in rules:
        return False
    new, old = rules[name], rules[baseline]
    return ((new["pooled"]["wrong_flagged"] or 0.0) > (old["pooled"]["wrong_flagged"] or 0.0)
            and (new["pooled"]["right_flagged"] or 0.0) <= MAX_RIGHT_FLAGGED
            and _folds_gaining(new) >= _folds_gaining(old))


def gains(fold: dict) -> bool:
    """Accepted answers more accurate than all answers on this fold."""
    accepted, every = fold["accepted_accuracy"], fold["accuracy"]
    return accepted is not None and every is not None and accepted > every


def _folds_gaining(rule: dict) -> int:
    return sum(1 for fold in rule["per_fold"].values() if gains(fold))


def choose_threshold(folds: list[Scores]) -> float:
    """The score threshold flagging the most wrong answers of `folds` (pooled) with at most
    MAX_RIGHT_FLAGGED of the right ones flagged."""
    right, score, gate, can_flag = (np.concatenate([f[i] for f in folds]) for i in range(4))
    best, best_key = -np.inf, None
    for threshold in np.unique(score[np.isfinite(score)]):
        flagged = gate | (can_flag & (score < threshold))
        right_flagged = _share(flagged[right])
        if right_flagged is not None and right_flagged > MAX_RIGHT_FLAGGED:
            break  # a higher threshold only flags more
        key = (_share(flagged[~right]) or 0.0, -(right_flagged or 0.0))
        if best_key is None or key > best_key:
            best, best_key = float(threshold), key
    return best


def risk_coverage(right: np.ndarray, score: np.ndarray) -> dict:
    """Error rate of the most trusted answers at each coverage, AURC and the best AURC."""
    if not len(right):
        return {"aurc": None, "best_aurc": None, "curve": []}
    risks = cumulative_risk(right, score)
    best = cumulative_risk(right, np.asarray(right, dtype=float))  # every right answer first
    curve = [{"coverage": float(c),
              "risk": float(risks[max(1, int(round(c * len(risks)))) - 1])} for c in COVERAGES]
    return {"aurc": float(risks.mean()), "best_aurc": float(best.mean()), "curve": curve}


def selective_report(result: dict) -> dict:
    """Every applicable rule's figures on the held-out folds of a `lungcnn loso` result."""
    folds = result["folds"]
    missing = {name: field for name, field in NEEDS.items() if not carries(folds, field)}
    report = {name: _rule_report(rule, folds) for name, rule in RULES.items()
              if name not in missing}
    return {"rules": report, "max_right_flagged": MAX_RIGHT_FLAGGED,
            "not_measured": {name: f"the held-out records have no {field}"
                             for name, field in missing.items()}}


def _rule_report(rule: Rule, folds: dict[str, dict]) -> dict:
    scored = {source: rule(folds, source) for source in folds}
    per_fold = {source: {**share_block(s.right, s.flagged), **risk_coverage(s.right, s.score)}
                for source, s in scored.items()}
    right = np.concatenate([s.right for s in scored.values()])
    pooled_score = np.concatenate([s.score for s in scored.values()])
    flagged = np.concatenate([s.flagged for s in scored.values()])
    return {"pooled": {**share_block(right, flagged), **risk_coverage(right, pooled_score)},
            "per_fold": per_fold, "by_class": _by_class(folds, scored)}


def _by_class(folds: dict[str, dict], scored: dict[str, Scored]) -> dict:
    keys = np.array([f"{r['label']}/{r['age_group']}" for source in scored
                     for r in ok_records(folds[source])])
    right = np.concatenate([s.right for s in scored.values()])
    flagged = np.concatenate([s.flagged for s in scored.values()])
    return {key: share_block(right[keys == key], flagged[keys == key])
            for key in sorted(set(keys))}


def _binary(records: list[dict], flagged: np.ndarray) -> Scored:
    """A yes/no rule: accepted answers rank first, each group by stable confidence."""
    stable = np.array([r["stable_confidence"] for r in records], dtype=np.float64)
    return Scored(_right(records), np.where(flagged, stable - 2.0, stable), flagged)


def _gate_last(score: np.ndarray, gate: np.ndarray) -> np.ndarray:
    """The scores with those of gate failures moved below every other."""
    return np.where(gate, -np.inf, score)


def _right(records: list[dict]) -> np.ndarray:
    return np.array([r["predicted"] == r["label"] for r in records], dtype=bool)


def _gate(records: list[dict]) -> np.ndarray:
    return np.array([refused(r) for r in records], dtype=bool)


def _share(mask: np.ndarray) -> float | None:
    return float(np.mean(mask)) if len(mask) else None
