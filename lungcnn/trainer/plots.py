"""Run plots: learning curves, test confusion matrix, per-class test ROC curves."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from lungcnn.edge.contract import CLASS_NAMES  # noqa: E402
from lungcnn.edge.manifest import write_bytes_atomic  # noqa: E402


def write_plots(
    plot_dir: Path, history: dict, test_metrics: dict, y_test: np.ndarray, test_probs: np.ndarray
) -> None:
    _save(_learning_curves(history), plot_dir / "learning_curves.png")
    _save(_confusion(test_metrics), plot_dir / "confusion_matrix.png")
    _save(_roc(y_test, test_probs, test_metrics), plot_dir / "roc.png")


def _learning_curves(history: dict):
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for axis, metric in zip(axes, ("loss", "accuracy", "auc")):
        axis.plot(epochs, history[metric], label="train")
        axis.plot(epochs, history[f"val_{metric}"], label="validation")
        axis.axvline(history["best_epoch"], color="grey", linestyle=":", label="kept epoch")
        axis.set(title=metric, xlabel="epoch")
        axis.legend()
    figure.tight_layout()
    return figure


def _confusion(metrics: dict):
    matrix = np.array(metrics["confusion_matrix"])
    figure, axis = plt.subplots(figsize=(5, 4.5))
    axis.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        color = "white" if count > matrix.max() / 2 else "black"
        axis.text(column, row, str(count), ha="center", va="center", color=color)
    ticks = range(len(CLASS_NAMES))
    axis.set(
        xticks=ticks,
        yticks=ticks,
        xticklabels=CLASS_NAMES,
        yticklabels=CLASS_NAMES,
        xlabel="predicted",
        ylabel="true",
        title=f"test (n={metrics['n']}), accuracy {_format(metrics['accuracy'])}",
    )
    figure.tight_layout()
    return figure


def _roc(y_true: np.ndarray, probs: np.ndarray, metrics: dict):
    figure, axis = plt.subplots(figsize=(5, 4.5))
    for label, name in enumerate(CLASS_NAMES):
        positive = y_true == label
        if 0 < positive.sum() < len(y_true):
            false_positive, true_positive, _ = roc_curve(positive, probs[:, label])
            axis.plot(false_positive, true_positive, label=name)
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    axis.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=f"test ROC, one vs rest (macro AUC {_format(metrics['auc_macro'])})",
    )
    axis.legend(loc="lower right")
    figure.tight_layout()
    return figure


def _save(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
