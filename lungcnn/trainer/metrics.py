"""Classification metrics with bootstrap confidence intervals; numpy only.

Every stage reports quality through `evaluate`, so numbers from train, convert and
benchmarks are computed the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lungcnn.edge.contract import CLASS_NAMES

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def evaluate(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy, one-vs-rest macro AUC, per-class precision/recall/F1, confusion matrix
    (rows = true class) and 95% bootstrap intervals for accuracy and AUC.

    AUC averages the classes that have both positives and negatives in `y_true`; it is None
    when no class does. Precision of a never-predicted class is 0.0.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = len(CLASS_NAMES)
    if probs.shape != (len(y_true), n_classes):
        raise ValueError(f"probs must have shape ({len(y_true)}, {n_classes}), got {probs.shape}")
    y_pred = probs.argmax(axis=1)
    confusion = confusion_matrix(y_true, y_pred)
    return {
        "n": int(len(y_true)),
        "accuracy": _accuracy(y_true, y_pred),
        "auc_macro": auc_macro(y_true, probs),
        "per_class": _per_class(confusion),
        "confusion_matrix": confusion.tolist(),
        "ci95": _bootstrap_ci95(y_true, probs),
    }


def evaluate_by_source(samples: Sequence, probs: np.ndarray) -> dict[str, dict]:
    """`evaluate` of each source's scans (`samples` are trainer.dataset.Sample rows of
    `probs`), with the source's age groups; sources sorted by name."""
    sources: dict[str, list[int]] = {}
    for row, sample in enumerate(samples):
        sources.setdefault(sample.source, []).append(row)
    report = {}
    for source in sorted(sources):
        rows = np.array(sources[source])
        labels = np.array([samples[i].label for i in rows], dtype=np.int64)
        report[source] = {
            "age_groups": sorted({samples[i].age_group for i in rows}),
            **evaluate(labels, np.asarray(probs)[rows]),
        }
    return report


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    n_classes = len(CLASS_NAMES)
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def auc_macro(y_true: np.ndarray, probs: np.ndarray) -> float | None:
    """One-vs-rest AUC averaged over the classes with both positives and negatives."""
    aucs = [
        _binary_auc(y_true == label, probs[:, label])
        for label in range(probs.shape[1])
        if 0 < np.count_nonzero(y_true == label) < len(y_true)
    ]
    return float(np.mean(aucs)) if aucs else None


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted as one half."""
    ranks = _average_ranks(scores)
    n_pos = np.count_nonzero(positive)
    n_neg = len(positive) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    return float(np.mean(y_true == y_pred)) if len(y_true) else None


def _per_class(confusion: np.ndarray) -> dict:
    result = {}
    for label, name in enumerate(CLASS_NAMES):
        true_positive = confusion[label, label]
        predicted, support = confusion[:, label].sum(), confusion[label].sum()
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result[name] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(support),
        }
    return result


def _bootstrap_ci95(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """Percentile intervals over resamples with replacement (fixed seed). Resamples in which
    AUC is undefined (a single class) are skipped for AUC."""
    if len(y_true) == 0:
        return {"accuracy": None, "auc_macro": None}
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    correct = probs.argmax(axis=1) == y_true
    accuracies, aucs = [], []
    for _ in range(BOOTSTRAP_RESAMPLES):
        index = rng.integers(0, len(y_true), len(y_true))
        accuracies.append(correct[index].mean())
        auc = auc_macro(y_true[index], probs[index])
        if auc is not None:
            aucs.append(auc)
    return {"accuracy": _percentiles(accuracies), "auc_macro": _percentiles(aucs)}


def _percentiles(values: list[float]) -> list[float] | None:
    if not values:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]


def format_with_ci(value: float | None, interval: list[float] | None) -> str:
    """`0.848 [0.76, 0.92]` for reports; "n/a" when the metric is undefined."""
    if value is None:
        return "n/a"
    if interval is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{interval[0]:.2f}, {interval[1]:.2f}]"
