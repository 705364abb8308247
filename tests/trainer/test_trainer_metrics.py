"""trainer.metrics.evaluate on hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from lungcnn.trainer.metrics import auc_macro, evaluate

# Six scans, two per class. Predictions: Covid 2/2 right; Normal 1/2 (one called Covid);
# Viral Pneumonia 1/2 (one called Normal). Accuracy 4/6.
Y = np.array([0, 0, 1, 1, 2, 2])
P = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.6, 0.3, 0.1],
        [0.5, 0.4, 0.1],  # Normal called Covid
        [0.2, 0.7, 0.1],
        [0.1, 0.5, 0.4],  # Viral Pneumonia called Normal
        [0.1, 0.2, 0.7],
    ]
)


def test_accuracy_confusion_and_per_class_by_hand():
    result = evaluate(Y, P)
    assert result["n"] == 6
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 1, 1]]
    covid = result["per_class"]["Covid"]
    assert covid == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    normal = result["per_class"]["Normal"]
    assert normal == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    viral = result["per_class"]["Viral Pneumonia"]
    assert viral == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})


def test_auc_one_vs_rest_by_hand():
    # Covid scores: positives 0.8, 0.6 beat all four negatives (max 0.5): AUC 1.
    # Normal: positives 0.4, 0.7 vs negatives 0.1, 0.3, 0.5, 0.2 -> 0.4 beats 3, 0.7 beats 4: 7/8.
    # Viral: positives 0.4, 0.7 vs negatives 0.1 x4 -> 1.
    assert evaluate(Y, P)["auc_macro"] == pytest.approx((1 + 7 / 8 + 1) / 3)


def test_tied_scores_count_half():
    y = np.array([0, 1, 0, 1])
    probs = np.array([[0.5, 0.5, 0.0]] * 4)
    # Every class-0 and class-1 score ties: AUC 0.5; class 2 has no positives and is skipped.
    assert auc_macro(y, probs) == pytest.approx(0.5)


def test_matches_scikit_learn_on_random_scores():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 80)
    probs = rng.dirichlet([1, 1, 1], 80)
    probs[:10] = probs[0]  # ties
    assert auc_macro(y, probs) == pytest.approx(
        sklearn_metrics.roc_auc_score(y, probs, multi_class="ovr", average="macro"), abs=1e-12
    )


def test_bootstrap_interval_is_deterministic_and_brackets_the_estimate():
    first, second = evaluate(Y, P), evaluate(Y, P)
    assert first["ci95"] == second["ci95"]
    for key in ("accuracy", "auc_macro"):
        low, high = first["ci95"][key]
        assert low <= first[key] <= high


def test_single_class_has_no_auc_and_never_predicted_class_has_zero_precision():
    result = evaluate(np.array([1, 1, 1]), np.array([[0.1, 0.9, 0.0]] * 3))
    assert result["auc_macro"] is None and result["ci95"]["auc_macro"] is None
    assert result["accuracy"] == 1.0
    assert result["per_class"]["Covid"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
    }


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="shape"):
        evaluate(Y, P[:, :2])
