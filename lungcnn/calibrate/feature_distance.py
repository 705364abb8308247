"""Fitting the feature distance (`edge.trust.feature_distance`): each class's distribution of
the training scans' features, and the threshold from the validation scans."""

from __future__ import annotations

import numpy as np

from lungcnn.edge.trust.feature_distance import FeatureDistance, fit_class_whitening

# Share of validation scans and their acquisition variants the feature distance may turn
# away. Chosen with the rule itself on the open-set proxy (benchmarks/open_set.py: train/
# only), before the feature distance was measured on test.
FEATURE_ABSTAIN_BUDGET = 0.05


def fit_feature_distance(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    val_predictions: np.ndarray,
) -> tuple[dict, np.ndarray]:
    """The manifest section of the feature distance, fitted on the training scans' features;
    its threshold is the (1 - FEATURE_ABSTAIN_BUDGET) quantile of the distances of the
    validation scans and their acquisition variants (`val_features`: (scans, 1 + variants,
    dim)), each to the class the model predicts for it (`val_predictions`: (scans,
    1 + variants)). Returns the section and those distances, (scans, 1 + variants)."""
    section = {key: _significant(value) if isinstance(value, np.ndarray) else value
               for key, value in fit_class_whitening(train_features, train_labels).items()}
    section["threshold"] = 1.0
    stored = FeatureDistance.from_json(section)  # measure with exactly what the device reads
    distances = np.array([
        [stored.distance(features, int(label)) for features, label in zip(rows, labels)]
        for rows, labels in zip(val_features, val_predictions)
    ])
    finite = distances[np.isfinite(distances)]  # inf: predicted a class with no training scan
    section["threshold"] = float(f"{np.quantile(finite, 1 - FEATURE_ABSTAIN_BUDGET):.6g}")
    section["rule"] = (
        "Mahalanobis distance to the training scans of the predicted class, each class with "
        f"its own Ledoit-Wolf covariance, in the {stored.projection.shape[1]} main directions "
        "of the training features (the classifier layer's input); threshold: the "
        f"{1 - FEATURE_ABSTAIN_BUDGET:.0%} quantile over validation scans and their "
        "acquisition variants; rule chosen on the open-set proxy (benchmarks/open_set.py), "
        "which reads train/ only")
    section["train_files"] = len(train_labels)
    return section, distances


def _significant(values: np.ndarray, digits: int = 7) -> list:
    """Nested lists of floats with `digits` significant digits (float32 precision): the
    whitening can be large along directions the training features barely vary in, so a
    fixed number of decimals would not do."""
    return np.vectorize(lambda v: float(f"{v:.{digits}g}"))(values).tolist()
