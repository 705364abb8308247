"""Adapting a model to a site on the device: the network stays frozen; its classifier head is
refitted (`edge.head`) on the site's features together with the stored features of the
original training scans (`edge.replay`: feature replay, so the training sources are not
forgotten), the site's scans up-weighted. Then the temperature and the confidence threshold,
which depend on the head, are refitted on out-of-fold predictions, and the feature distance
gains one mode per class of the site's scans (so the site's scans are not all "unlike the
training scans"). Only numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungcnn.edge.head import Head, fit_head, significant
from lungcnn.edge.trust.feature_distance import FeatureDistance, mode_whitening
from lungcnn.edge.trust.stability import CONFIDENCE_ABSTAIN_BUDGET
from lungcnn.edge.trust.temperature import apply_temperature, fit_temperature

RULE = ("head refitted on replay + site features (site share of the weight "
        "{site_share:.0%}, classes balanced within each); temperature and min_confidence "
        f"(the {CONFIDENCE_ABSTAIN_BUDGET:.0%} weighted quantile of the calibrated confidence) "
        "from {folds}-fold out-of-fold predictions on clean scans")


class AdaptError(ValueError):
    """Site scans that cannot be adapted on (one line)."""


@dataclass(frozen=True)
class AdaptSettings:
    """Site share and L2 trade the site's accuracy against the training sources' (more of
    either: better on the site, worse on the rest); chosen on the contract-1 bundled model
    with the jsrt scans as the site (docs/adapt.md), before any fold model was adapted."""

    site_share: float = 0.3  # share of the fitting weight the site's scans carry together
    l2: float = 0.1  # on the standardised features' weights
    folds: int = 5  # out-of-fold predictions for the temperature and threshold
    min_per_class: int = 5  # fewer scans of a class the site has: refused


@dataclass(frozen=True)
class Adaptation:
    head: Head
    temperature: float
    min_confidence: float  # before any held-out-source rule
    out_of_fold: dict  # accuracy of the out-of-fold predictions, site and replay


def check_site(labels: np.ndarray, class_names, settings: AdaptSettings) -> None:
    """AdaptError when a class the site has has fewer than `min_per_class` scans."""
    counts = np.bincount(labels, minlength=len(class_names))
    short = [f"{name} {count}" for name, count in zip(class_names, counts)
             if 0 < count < settings.min_per_class]
    if not len(labels) or short:
        raise AdaptError(f"too few scans to adapt on: at least {settings.min_per_class} per "
                         f"class the site has ({', '.join(short) or 'none'})")


def fit_adaptation(replay_features: np.ndarray, replay_labels: np.ndarray,
                   site_features: np.ndarray, site_labels: np.ndarray, classes: int,
                   settings: AdaptSettings = AdaptSettings()) -> Adaptation:
    """The refitted head, temperature and confidence threshold."""
    features, labels, is_site, weights = _pooled(replay_features, replay_labels, site_features,
                                                 site_labels, settings.site_share)
    head = fit_head(features, labels, weights, classes, settings.l2)
    held_out = _out_of_fold(features, labels, weights, classes, settings)
    temperature = fit_temperature(held_out, labels, weights)
    calibrated = apply_temperature(held_out, temperature)
    confidence = calibrated.max(axis=1)
    minimum = weighted_quantile(confidence, weights, CONFIDENCE_ABSTAIN_BUDGET)
    right = calibrated.argmax(axis=1) == labels
    return Adaptation(head, temperature, round(float(minimum), 4),
                      {"site": float(right[is_site].mean()),
                       "replay": float(right[~is_site].mean())})


def site_head(replay_features: np.ndarray, replay_labels: np.ndarray,
              site_features: np.ndarray, site_labels: np.ndarray, classes: int,
              settings: AdaptSettings = AdaptSettings()) -> Head:
    """The refitted head alone, as `fit_adaptation` fits it."""
    features, labels, _, weights = _pooled(replay_features, replay_labels, site_features,
                                           site_labels, settings.site_share)
    return fit_head(features, labels, weights, classes, settings.l2)


def _pooled(replay_features: np.ndarray, replay_labels: np.ndarray, site_features: np.ndarray,
            site_labels: np.ndarray, site_share: float) -> tuple[np.ndarray, ...]:
    """Replay and site scans together: features, labels, which are the site's, weights."""
    features = np.concatenate([replay_features, site_features]).astype(np.float64)
    labels = np.concatenate([replay_labels, site_labels]).astype(int)
    is_site = np.arange(len(labels)) >= len(replay_labels)
    return features, labels, is_site, sample_weights(labels, is_site, site_share)


def with_site_modes(section: dict, site_features: np.ndarray, site_labels: np.ndarray) -> dict:
    """The manifest's feature-distance section with one more mode per class of the site's
    scans, in the same subspace (the threshold is kept: distances are in the same units)."""
    distance = FeatureDistance.from_json(section)
    classes = [int(c) for c in np.unique(site_labels)]
    means, whitening = mode_whitening((site_features - distance.center) @ distance.projection,
                                      site_labels, classes)
    return {**section,
            "classes": [*distance.classes, *classes],
            "class_means": significant(np.concatenate([distance.class_means, means])),
            "class_whitening": significant(np.concatenate([distance.class_whitening,
                                                           whitening])),
            "site_modes": classes}


def sample_weights(labels: np.ndarray, is_site: np.ndarray, site_share: float) -> np.ndarray:
    """Weights summing to 1: the site's scans carry `site_share` of it, the replay scans the
    rest, and within each group every class present carries an equal part."""
    weights = np.zeros(len(labels))
    for group, share in ((is_site, site_share), (~is_site, 1.0 - site_share)):
        present = np.unique(labels[group])
        for label in present:
            members = group & (labels == label)
            weights[members] = share / len(present) / members.sum()
    return weights / weights.sum()


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value whose cumulative weight (values ascending) reaches q."""
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order]) / weights.sum()
    return float(values[order][min(np.searchsorted(cumulative, q), len(values) - 1)])


def _out_of_fold(features: np.ndarray, labels: np.ndarray, weights: np.ndarray, classes: int,
                 settings: AdaptSettings) -> np.ndarray:
    """Each scan's probabilities from a head fitted without its fold (folds stratified by
    class, fixed seed)."""
    fold = np.empty(len(labels), dtype=int)
    rng = np.random.default_rng(0)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        fold[rng.permutation(members)] = np.arange(len(members)) % settings.folds
    probabilities = np.zeros((len(labels), classes))
    for k in range(settings.folds):
        train = fold != k
        if not (~train).any():
            continue
        head = fit_head(features[train], labels[train], weights[train] / weights[train].sum(),
                        classes, settings.l2)
        probabilities[~train] = head.probabilities(features[~train])
    return probabilities
