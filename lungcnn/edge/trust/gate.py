"""The X-ray gate: statistics of the scan image compared with those of the training scans.

A scan outside the training range of any statistic is out_of_distribution: a colour photo,
a document, a blank or a slice image, no chest layout, far less fine detail than any training
scan. The bounds and the mean training scan (the chest template) come from the manifest's
"trust" section (`lungcnn calibrate`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from lungcnn.edge.contract import resize_gray
from lungcnn.edge.manifest import ManifestError
from lungcnn.edge.trust.signal import (
    FLAG_OUT_OF_DISTRIBUTION,
    Evidence,
    Signal,
    Verdict,
    array,
    number,
)

TEMPLATE_SIDE = 16
ANALYSIS_SIDE = 128
SYMMETRY_SIDE = 64

# statistic -> (which side is suspicious, what an out-of-range value means)
GATE_FEATURES: dict[str, tuple[str, str]] = {
    "colourfulness": ("high", "a colour image, not a grayscale X-ray"),
    "contrast": ("both", "intensity spread unlike any training scan (blank or extreme)"),
    "edge_density": ("both", "texture unlike an X-ray (noise, text or flat areas)"),
    "bright_fraction": ("high", "large white areas, as in a document"),
    "dark_fraction": ("high", "large black areas, as around a CT, MRI or ultrasound image"),
    "histogram_entropy": ("low", "few distinct gray levels, as in a graphic or a slice image"),
    "symmetry": ("low", "not left-right symmetric like a chest"),
    "chest_layout": ("low", "intensity layout unlike a chest X-ray"),
    "detail": ("low", "far less fine detail than any training scan (low resolution or "
               "heavy compression)"),
}


@dataclass(frozen=True)
class GateSettings:
    bounds: dict[str, tuple[float, float]]  # every GATE_FEATURES statistic: (low, high)
    template: np.ndarray  # (TEMPLATE_SIDE, TEMPLATE_SIDE) mean training scan


def gate_settings(calibration: dict, trust: dict,
                  class_names: tuple[str, ...]) -> GateSettings | None:
    """The gate of a fitted trust section: every statistic bounded, the template given."""
    if not trust:
        return None
    bounds = trust.get("gate_bounds")
    if not isinstance(bounds, dict) or set(bounds) != set(GATE_FEATURES):
        raise ManifestError("trust gate_bounds must bound exactly the statistics "
                            f"{', '.join(GATE_FEATURES)}")
    parsed = {}
    for name in GATE_FEATURES:
        pair = bounds[name]
        if not isinstance(pair, list) or len(pair) != 2:
            raise ManifestError(f"trust gate_bounds {name} must be [low, high]")
        low, high = (number(v, f"trust gate_bounds {name}") for v in pair)
        if low > high:
            raise ManifestError(f"trust gate_bounds {name}: low {low:g} > high {high:g}")
        parsed[name] = (low, high)
    template = array(trust.get("chest_template"), "trust chest_template", 1)
    in_range = ((0 <= template) & (template <= 255)).all()
    if template.size != TEMPLATE_SIDE * TEMPLATE_SIDE or not in_range:
        raise ManifestError(f"trust chest_template must hold {TEMPLATE_SIDE}x{TEMPLATE_SIDE} "
                            "values in 0..255")
    return GateSettings(parsed, template.reshape(TEMPLATE_SIDE, TEMPLATE_SIDE))


# How a gate flag's reason starts (`lungcnn.benchmarks.loso_report` tells the signals apart by it).
REASON_PREFIX = "unlike the training X-rays: "


def check(evidence: Evidence, settings: GateSettings) -> Verdict:
    statistics = image_features(evidence.model_input, settings.template, evidence.colour)
    failures = gate_failures(statistics, settings.bounds)
    return Verdict({"features": statistics},
                   REASON_PREFIX + "; ".join(failures) if failures else None)


SIGNAL = Signal("gate", FLAG_OUT_OF_DISTRIBUTION, gate_settings, check)


def gate_failures(features: dict[str, float], bounds: dict) -> list[str]:
    """Reasons, one per statistic outside its training range (empty when the scan passes)."""
    reasons = []
    for name, (low, high) in bounds.items():
        value = features.get(name)
        if value is None or low <= value <= high:
            continue
        meaning = GATE_FEATURES.get(name, ("", "outside the training range"))[1]
        limit = f"below {low:.3g}" if value < low else f"above {high:.3g}"
        reasons.append(f"{meaning} ({name} {value:.3g}, {limit})")
    return reasons


def image_features(model_input: np.ndarray, template: np.ndarray | None,
                   colour: float) -> dict[str, float]:
    """Statistics of a scan that separate chest X-rays from other images.

    They are measured on what the model sees, `model_input` ((size, size, 1) uint8), so one
    resize of the decoded scan serves the model and the gate. `template` is the mean training
    input at 16 px, `colour` the colourfulness of the file.
    """
    pixels = model_input[:, :, 0]
    small = resize_gray(pixels, ANALYSIS_SIDE)[:, :, 0].astype(np.float64)
    contrast = small.std()
    gradient = np.abs(np.diff(small, axis=0)).mean() + np.abs(np.diff(small, axis=1)).mean()
    half = resize_gray(pixels, SYMMETRY_SIDE)[:, :, 0].astype(np.float64)
    features = {
        "colourfulness": float(colour),
        "contrast": float(contrast),
        "edge_density": float(gradient / (contrast + 1.0)),
        "bright_fraction": float((small > 240).mean()),
        "dark_fraction": float((small < 12).mean()),
        "histogram_entropy": _histogram_entropy(small),
        "symmetry": _correlation(half, half[:, ::-1]),
        "detail": _fine_detail(pixels),
    }
    if template is not None:
        features["chest_layout"] = _correlation(layout_of(model_input), template)
    return features


def layout_of(model_input: np.ndarray) -> np.ndarray:
    """The coarse intensity layout of a model input: TEMPLATE_SIDE px, float64."""
    return resize_gray(model_input[:, :, 0], TEMPLATE_SIDE)[:, :, 0].astype(np.float64)


def _histogram_entropy(pixels: np.ndarray, bins: int = 32) -> float:
    """Entropy of the gray-level histogram of 0-255 pixels in `bins` equal bins."""
    counts = np.bincount((pixels.ravel() * (bins / 256)).astype(np.intp), minlength=bins)
    counts = counts[counts > 0] / pixels.size
    return float(-(counts * np.log2(counts)).sum())


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 0 else 0.0


def _fine_detail(pixels: np.ndarray) -> float:
    """Share of the image's detail in its finest octave: low for an enlarged small image."""
    size = pixels.shape[0]
    image = Image.fromarray(pixels)
    values = pixels.astype(np.float64)

    def lost_below(side: int) -> float:
        restored = image.resize((max(2, side),) * 2, Image.Resampling.BILINEAR).resize(
            (size, size), Image.Resampling.BILINEAR
        )
        return float(np.abs(values - np.asarray(restored, dtype=np.float64)).mean())

    coarse = lost_below(size // 8)
    return lost_below(size // 2) / coarse if coarse > 0 else 0.0
