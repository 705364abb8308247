"""Distance to the training scans in the model's own feature space.

A scan whose features are far from those of the training scans of the class the model
predicts is out_of_distribution: the model was never shown such an input. The distribution
comes from the manifest's "trust" section ("feature_distance", `lungcnn calibrate`), only
for a model converted with a features output. A class may have several distributions (modes):
`edge-classify adapt` adds one per class of the site's scans, and a scan is measured against
the nearest mode of its class. The fit is here too (numpy only), so the device can refit it."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from lungcnn.edge.manifest import ManifestError
from lungcnn.edge.trust.signal import (
    FLAG_OUT_OF_DISTRIBUTION,
    Evidence,
    Signal,
    Verdict,
    array,
    number,
)

# Relative asymmetry a stored whitening may have: it is written with 7 significant digits.
_SYMMETRY_TOLERANCE = 1e-5
# Dimensions of the feature subspace the class distributions are fitted in (at most).
FEATURE_COMPONENTS = 32


@dataclass(frozen=True)
class FeatureDistance:
    """Mahalanobis distance of a scan's features to the training scans of its predicted class,
    each class with its own covariance, in the subspace of the training features' main
    directions: z = P^T (f - center); distance = |W_c (z - mean_c)| for the predicted class c.
    `threshold` is the largest distance a scan may have and still be trusted; a class with no
    training scans has no distribution, so every scan predicted as it is out of it.
    `class_names` (the model's) name the class whose training scans are nearest."""

    center: np.ndarray  # (dim,)
    projection: np.ndarray  # (dim, k)
    classes: tuple[int, ...]  # the labels that had training scans
    class_means: np.ndarray  # (len(classes), k)
    class_whitening: np.ndarray  # (len(classes), k, k), each symmetric positive-definite
    threshold: float
    class_names: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, fields: dict, classes: int | None = None) -> FeatureDistance:
        """Read and check the manifest section (ManifestError); `classes` is the model's
        class count, which the section's labels must lie below."""
        if not isinstance(fields, dict):
            raise ManifestError("trust feature_distance must be an object")
        missing = {"center", "projection", "classes", "class_means", "class_whitening",
                   "threshold"} - set(fields)
        if missing:
            raise ManifestError(f"trust feature_distance lacks {', '.join(sorted(missing))}")
        name = "trust feature_distance"
        center = array(fields["center"], f"{name} center", 1)
        projection = array(fields["projection"], f"{name} projection", 2)
        labels = _labels(fields["classes"], classes)
        means = array(fields["class_means"], f"{name} class_means", 2)
        whitening = array(fields["class_whitening"], f"{name} class_whitening", 3)
        k = projection.shape[1]
        if (projection.shape[0] != center.shape[0] or k > center.shape[0]
                or means.shape != (len(labels), k) or whitening.shape != (len(labels), k, k)):
            raise ManifestError(f"{name}: center (dim), projection (dim, k <= dim), class_means "
                                "(classes, k) and class_whitening (classes, k, k) do not fit "
                                "together")
        for label, matrix in zip(labels, whitening):
            _check_positive_definite(matrix, f"{name} class_whitening of class {label}")
        threshold = number(fields["threshold"], f"{name} threshold", low=0.0, low_open=True)
        return cls(center, projection, labels, means, whitening, threshold)

    @property
    def dim(self) -> int:
        return int(self.center.shape[0])

    def distance(self, features: np.ndarray, label: int) -> float:
        return self.distances(features).get(label, float("inf"))

    def distances(self, features: np.ndarray) -> dict[int, float]:
        """The distance to the training scans of every class that had some, by label: the
        nearest of the class's modes (an adapted model adds the site's as further modes)."""
        z = (np.asarray(features, dtype=np.float64) - self.center) @ self.projection
        nearest: dict[int, float] = {}
        for label, mean, whitening in zip(self.classes, self.class_means, self.class_whitening):
            distance = float(np.linalg.norm(whitening @ (z - mean)))
            nearest[label] = min(distance, nearest.get(label, float("inf")))
        return nearest


def _labels(values, classes: int | None) -> tuple[int, ...]:
    if (not isinstance(values, list) or not values
            or any(isinstance(v, bool) or not isinstance(v, int) for v in values)
            or any(v < 0 or (classes is not None and v >= classes) for v in values)):
        raise ManifestError("trust feature_distance classes must be labels of the model's "
                            "classes")
    return tuple(values)


def _check_positive_definite(matrix: np.ndarray, name: str) -> None:
    scale = float(np.abs(matrix).max())
    if scale == 0 or np.abs(matrix - matrix.T).max() > _SYMMETRY_TOLERANCE * scale:
        raise ManifestError(f"{name} is not a symmetric matrix")
    eigenvalues = np.linalg.eigvalsh((matrix + matrix.T) / 2)
    if not np.isfinite(eigenvalues).all() or eigenvalues.min() <= 0:
        raise ManifestError(f"{name} is not positive-definite")


def fit_class_whitening(features: np.ndarray, labels: np.ndarray) -> dict:
    """center, projection onto the main directions of the training features, and for each
    class present its mean and W = S^(-1/2), S its shrunk covariance in that subspace."""
    features = np.asarray(features, dtype=np.float64)
    center = features.mean(axis=0)
    components = min(FEATURE_COMPONENTS, features.shape[1], len(features) - 1)
    projection = np.linalg.svd(features - center, full_matrices=False)[2][:components].T
    classes = [int(c) for c in np.unique(labels)]
    means, whitening = mode_whitening((features - center) @ projection, labels, classes)
    return {"center": center, "projection": projection, "classes": classes,
            "class_means": means, "class_whitening": whitening}


def mode_whitening(projected: np.ndarray, labels: np.ndarray,
                   classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Each class's mean and whitening W = S^(-1/2) of its Ledoit-Wolf covariance S, from
    features already projected into the subspace."""
    means, whitening = [], []
    for label in classes:
        members = projected[labels == label]
        eigenvalues, eigenvectors = np.linalg.eigh(ledoit_wolf(members))
        eigenvalues = np.maximum(eigenvalues, eigenvalues.max() * 1e-6)
        means.append(members.mean(axis=0))
        whitening.append((eigenvectors / np.sqrt(eigenvalues)) @ eigenvectors.T)
    return np.stack(means), np.stack(whitening)


def ledoit_wolf(samples: np.ndarray) -> np.ndarray:
    """The Ledoit-Wolf shrunk covariance of (n, k) samples (as scikit-learn's LedoitWolf):
    the empirical covariance pulled towards a multiple of the identity."""
    centred = samples - samples.mean(axis=0)
    n, k = centred.shape
    empirical = centred.T @ centred / n
    mu = np.trace(empirical) / k
    if k == 1:
        return empirical
    squared = centred**2
    beta_sum = np.sum(squared.T @ squared)
    delta_sum = np.sum(empirical**2)
    beta = (beta_sum / n - delta_sum) / (k * n)
    delta = (delta_sum - 2.0 * mu * np.trace(empirical) + k * mu**2) / k
    shrinkage = 0.0 if beta == 0 else min(beta, delta) / delta
    return (1.0 - shrinkage) * empirical + shrinkage * mu * np.eye(k)


def feature_distance_settings(calibration: dict, trust: dict,
                              class_names: tuple[str, ...]) -> FeatureDistance | None:
    fields = trust.get("feature_distance") if trust else None
    if fields is None:
        return None
    return replace(FeatureDistance.from_json(fields, len(class_names) or None),
                   class_names=tuple(class_names))


def check(evidence: Evidence, settings: FeatureDistance) -> Verdict:
    if evidence.features is None:
        raise ValueError("the settings check the feature distance, but the model has no "
                         "features output")
    distances = settings.distances(evidence.features)
    distance = distances.get(evidence.label, float("inf"))
    values = {"feature_distance": distance, "nearest_class": _nearest(distances, settings)}
    if distance <= settings.threshold:
        return Verdict(values)
    return Verdict(values,
                   "unlike the training X-rays to the model itself: its features are far from "
                   "those of the training scans of the class it predicts (distance "
                   f"{distance:.1f} > {settings.threshold:.1f})")


def _nearest(distances: dict[int, float], settings: FeatureDistance) -> str | None:
    """The class whose training scans are nearest (None when no distance is finite)."""
    finite = {label: d for label, d in distances.items() if np.isfinite(d)}
    if not finite:
        return None
    label = min(finite, key=finite.get)
    names = settings.class_names
    return names[label] if label < len(names) else str(label)


SIGNAL = Signal("feature_distance", FLAG_OUT_OF_DISTRIBUTION, feature_distance_settings, check)
