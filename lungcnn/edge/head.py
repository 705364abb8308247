"""A classifier head refitted on a model's features: multinomial logistic regression on
standardised features, carried in the manifest ("head") and applied by the runtime to the
model's features output in place of the network's own classifier layer.

`edge-classify adapt` fits it (`fit_head`) on a site's scans plus the stored features of the
original training scans; only numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungcnn.edge.manifest import ManifestError
from lungcnn.edge.trust.signal import array

HEAD_METHOD = "multinomial logistic regression on standardised features, L2 (Newton)"
_NEWTON_STEPS = 50
_TOLERANCE = 1e-8
_BIAS_L2 = 1e-6  # keeps the Hessian positive-definite (softmax is shift-invariant)


@dataclass(frozen=True)
class Head:
    """logits = ((features - mean) / scale) @ weights + bias; probabilities = softmax."""

    mean: np.ndarray  # (dim,)
    scale: np.ndarray  # (dim,), all > 0
    weights: np.ndarray  # (dim, classes)
    bias: np.ndarray  # (classes,)

    @classmethod
    def from_json(cls, fields, dim: int | None, classes: int) -> Head:
        """Read and check the manifest's "head" (ManifestError): finite numbers, shapes that
        fit the model's `dim` features and `classes` classes."""
        if not isinstance(fields, dict):
            raise ManifestError("head must be an object")
        missing = {"mean", "scale", "weights", "bias"} - set(fields)
        if missing:
            raise ManifestError(f"head lacks {', '.join(sorted(missing))}")
        if dim is None:
            raise ManifestError("head given, but the model has no features output")
        head = cls(array(fields["mean"], "head mean", 1), array(fields["scale"], "head scale", 1),
                   array(fields["weights"], "head weights", 2),
                   array(fields["bias"], "head bias", 1))
        if (head.mean.shape != (dim,) or head.scale.shape != (dim,)
                or head.weights.shape != (dim, classes) or head.bias.shape != (classes,)):
            raise ManifestError(f"head: mean and scale ({dim},), weights ({dim}, {classes}) and "
                                f"bias ({classes},) must fit the model's features and classes")
        if head.scale.min() <= 0:
            raise ManifestError("head scale must be positive")
        return head

    def to_json(self) -> dict:
        return {"method": HEAD_METHOD,
                **{key: significant(getattr(self, key))
                   for key in ("mean", "scale", "weights", "bias")}}

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(n, classes) float32 probabilities of (n, dim) features."""
        standard = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return softmax(standard @ self.weights + self.bias).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def fit_head(features: np.ndarray, labels: np.ndarray, weights: np.ndarray, classes: int,
             l2: float) -> Head:
    """The head minimising sum_i weights_i * cross-entropy_i + l2/2 |W|^2 on features
    standardised by their mean and standard deviation (`weights` sum to 1)."""
    features = np.asarray(features, dtype=np.float64)
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)  # a feature constant here carries nothing
    design = np.hstack([(features - mean) / scale, np.ones((len(features), 1))])
    targets = np.eye(classes)[np.asarray(labels, dtype=int)]
    penalty = np.full(design.shape[1], float(l2))
    penalty[-1] = _BIAS_L2
    params = _newton(design, targets, np.asarray(weights, dtype=np.float64), penalty)
    return Head(mean, scale, params[:-1], params[-1])


def _newton(design: np.ndarray, targets: np.ndarray, weights: np.ndarray,
            penalty: np.ndarray) -> np.ndarray:
    """Newton's method with backtracking on the weighted, penalised cross-entropy."""
    columns, classes = design.shape[1], targets.shape[1]
    params = np.zeros((columns, classes))
    loss = _loss(design, targets, weights, penalty, params)
    for _ in range(_NEWTON_STEPS):
        probabilities = softmax(design @ params)
        gradient = design.T @ (weights[:, None] * (probabilities - targets))
        gradient += penalty[:, None] * params
        step = np.linalg.solve(_hessian(design, probabilities, weights, penalty),
                               gradient.T.ravel()).reshape(classes, columns).T
        size = 1.0
        while size > 1e-6:
            candidate = params - size * step
            new_loss = _loss(design, targets, weights, penalty, candidate)
            if new_loss <= loss:
                break
            size /= 2
        else:
            break
        params, previous, loss = candidate, loss, new_loss
        if previous - loss < _TOLERANCE * max(1.0, abs(loss)):
            break
    return params


def _hessian(design: np.ndarray, probabilities: np.ndarray, weights: np.ndarray,
             penalty: np.ndarray) -> np.ndarray:
    """Blocks (k, l): X^T diag(w * p_k * (delta_kl - p_l)) X, plus the penalty."""
    columns, classes = design.shape[1], probabilities.shape[1]
    hessian = np.empty((classes * columns, classes * columns))
    for k in range(classes):
        for m in range(k, classes):
            curvature = weights * probabilities[:, k] * ((k == m) - probabilities[:, m])
            block = design.T @ (curvature[:, None] * design)
            hessian[k * columns:(k + 1) * columns, m * columns:(m + 1) * columns] = block
            hessian[m * columns:(m + 1) * columns, k * columns:(k + 1) * columns] = block.T
    hessian[np.diag_indices_from(hessian)] += np.tile(penalty, classes)
    return hessian


def _loss(design: np.ndarray, targets: np.ndarray, weights: np.ndarray, penalty: np.ndarray,
          params: np.ndarray) -> float:
    logits = design @ params
    top = logits.max(axis=1, keepdims=True)
    log_probabilities = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
    cross_entropy = -(weights * (targets * log_probabilities).sum(axis=1)).sum()
    return float(cross_entropy + 0.5 * (penalty[:, None] * params**2).sum())


def significant(values: np.ndarray, digits: int = 9) -> list | float:
    """Nested lists of floats with `digits` significant digits, for a manifest."""
    return np.vectorize(lambda v: float(f"{v:.{digits}g}"))(values).tolist()
