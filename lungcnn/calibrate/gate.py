"""Fitting the X-ray gate (`edge.trust.gate`): per-statistic bounds and the chest template,
from the training scans only."""

from __future__ import annotations

import numpy as np

from lungcnn.edge.trust.gate import GATE_FEATURES, image_features, layout_of

# Gate bounds: the 1st..99th percentile of the training scans, widened on each side by
# GATE_MARGIN times the 1st..99th percentile spread (an a-priori rule, not tuned to any
# non-X-ray set).
GATE_PERCENTILES = (1.0, 99.0)
GATE_MARGIN = 0.5
# Floors of the upper bounds, so that a plausible X-ray is never refused for them: colour in a
# figure (an arrow, a label) is rare but real, and a brighter exposure saturates more pixels.
MIN_UPPER_BOUNDS = {"colourfulness": 8.0, "bright_fraction": 0.35}
OPEN_BOUND = 1e9  # stands for infinity on the harmless side (JSON has no infinity)
RULE = (f"gate: training percentiles {GATE_PERCENTILES} widened by {GATE_MARGIN} of their "
        "spread")


def fit_gate(feature_rows: list[dict[str, float]]) -> dict[str, list[float]]:
    """Per-statistic [low, high] from training scans; the unused side of a one-sided
    statistic is left open."""
    bounds = {}
    for name, (side, _) in GATE_FEATURES.items():
        values = np.array([row[name] for row in feature_rows if name in row])
        if values.size == 0:
            continue
        p_low, p_high = np.percentile(values, GATE_PERCENTILES)
        margin = GATE_MARGIN * (p_high - p_low)
        low = float(p_low - margin) if side in ("low", "both") else -OPEN_BOUND
        high = float(p_high + margin) if side in ("high", "both") else OPEN_BOUND
        high = max(high, MIN_UPPER_BOUNDS.get(name, high))
        bounds[name] = [round(low, 6), round(high, 6)]
    return bounds


def chest_template(model_inputs: list[np.ndarray]) -> np.ndarray:
    """The mean training input at 16 x 16 pixels: where a chest X-ray is bright and dark."""
    return np.stack([layout_of(model_input) for model_input in model_inputs]).mean(axis=0)


def gate_fields(train: list) -> dict:
    """The trust section's gate fields fitted on `train` ((model input, label, colour) items)."""
    inputs = [model_input for model_input, _, _ in train]
    template = chest_template(inputs)
    rows = [image_features(model_input, template, colour)
            for model_input, (_, _, colour) in zip(inputs, train, strict=True)]
    return {"gate_bounds": fit_gate(rows),
            "chest_template": [round(float(v), 2) for v in template.ravel()]}
