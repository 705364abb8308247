"""Quality of one model's probabilities on the test split and its leak-free subset."""

from __future__ import annotations

import numpy as np

from lungcnn.benchmarks.testset import TestSet
from lungcnn.trainer.metrics import evaluate


def quality_report(test_set: TestSet, probs: np.ndarray, keras_probs: np.ndarray) -> dict:
    """Accuracy and macro AUC with 95% bootstrap intervals, per-class F1 and agreement
    with the Keras model, for the whole test split and for its leak-free subset."""
    masks = {"test": np.ones(len(test_set.labels), bool), "test_dedup": test_set.leak_free}
    return {
        subset: _subset_quality(test_set.labels[mask], probs[mask], keras_probs[mask])
        for subset, mask in masks.items()
    }


def _subset_quality(labels: np.ndarray, probs: np.ndarray, keras_probs: np.ndarray) -> dict:
    metrics = evaluate(labels, probs)
    return {
        "n": metrics["n"],
        "accuracy": metrics["accuracy"],
        "accuracy_ci95": metrics["ci95"]["accuracy"],
        "auc_macro": metrics["auc_macro"],
        "auc_macro_ci95": metrics["ci95"]["auc_macro"],
        "f1": {name: values["f1"] for name, values in metrics["per_class"].items()},
        "confusion_matrix": metrics["confusion_matrix"],
        "agreement_with_keras": float(np.mean(probs.argmax(1) == keras_probs.argmax(1)))
        if len(labels) else None,
        "max_abs_prob_diff_vs_keras": float(np.abs(probs - keras_probs).max())
        if len(labels) else None,
    }
