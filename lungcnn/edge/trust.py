"""Whether to trust one prediction: calibrated confidence, stability, and an X-ray gate.

Every scan gets one of three flags, with a one-line reason:
  "ok"                  the checks below passed;
  "out_of_distribution" the image is unlike the training scans (colour photo, document,
                        blank, no chest layout, far less fine detail than any training scan),
                        or the model's own features of it are far from those of the
                        training scans of the class it predicts: the model was never shown
                        such an input, so its answer means nothing;
  "uncertain"           a chest X-ray, but the calibrated confidence, averaged over the scan
                        and a few slight re-acquisitions of it (downscaled and re-encoded,
                        blurred, other contrast, reframed), is below the threshold: the model
                        is unsure, or changes its mind when the same scan is re-acquired.

Thresholds come from the model's manifest ("calibration" and "trust" sections, written by
`calibrate.calibration` from training and validation scans only). Only numpy and Pillow.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from lungcnn.edge.contract import PILLOW_FORMATS, ScanError, read_grayscale, resize_gray
from lungcnn.edge.manifest import ManifestError

FLAG_OK = "ok"
FLAG_UNCERTAIN = "uncertain"
FLAG_OUT_OF_DISTRIBUTION = "out_of_distribution"
# The fields of `Assessment.to_record`, in order: what a result line gains from this module.
TRUST_FIELDS = ("flag", "reason", "calibrated_confidence", "stable_confidence",
                "feature_distance")

# Probabilities are clipped here before the temperature is applied: just below the int8 output
# step (1/256), so a float model and its int8 conversion are calibrated alike.
PROB_FLOOR = 1e-3
TEMPLATE_SIDE = 16
ANALYSIS_SIDE = 128
SYMMETRY_SIDE = 64

RunFn = Callable[[np.ndarray], np.ndarray]
"""A model: uint8 batch (n, size, size, 1) of raw 0-255 pixels -> probabilities (n, classes)."""
FeaturesFn = Callable[[np.ndarray], np.ndarray]
"""A model's features: one (size, size, 1) uint8 scan -> its feature vector (dim,)."""


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the model outputs probabilities, so T scales log-probabilities."""
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), PROB_FLOOR, 1.0))
    scaled = logits / float(temperature)
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


# --- acquisition variants: the same scan as another device or export might deliver it ---


def acquisition_variants(model_input: np.ndarray) -> dict[str, np.ndarray]:
    """Cheap re-acquisitions of a (size, size, 1) uint8 model input, each of the same shape."""
    image = Image.fromarray(model_input[:, :, 0])
    size = model_input.shape[0]
    return {
        name: np.asarray(make(image, size), dtype=np.uint8)[:, :, None]
        for name, make in VARIANTS.items()
    }


# Mild on purpose: a change a scan plausibly goes through between two sites, not a stress test.
# (Strong variants would flag most in-distribution test scans too.)
LOW_RESOLUTION_FACTOR = 0.5
JPEG_QUALITY = 50
BLUR_SIGMA_AT_256 = 1.0
CONTRAST_FACTOR = 0.85
REFRAME_MARGIN = 0.04


def _low_resolution_jpeg(image: Image.Image, size: int) -> Image.Image:
    small = image.resize((max(16, round(size * LOW_RESOLUTION_FACTOR)),) * 2,
                         Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("L").resize((size, size), Image.Resampling.BILINEAR)


def _blur(image: Image.Image, size: int) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(max(0.5, BLUR_SIGMA_AT_256 * size / 256)))


def _lower_contrast(image: Image.Image, size: int) -> Image.Image:
    return ImageEnhance.Contrast(image).enhance(CONTRAST_FACTOR)


def _reframe(image: Image.Image, size: int) -> Image.Image:
    margin = max(1, round(size * REFRAME_MARGIN))
    return image.crop((margin, margin, size - margin, size - margin)).resize(
        (size, size), Image.Resampling.BILINEAR
    )


VARIANTS: dict[str, Callable[[Image.Image, int], Image.Image]] = {
    "low_resolution_jpeg": _low_resolution_jpeg,
    "blur": _blur,
    "lower_contrast": _lower_contrast,
    "reframed": _reframe,
}


# --- the X-ray gate: image statistics compared with those of the training scans ---

# feature -> (which side is suspicious, what an out-of-range value means)
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


def file_colourfulness(path: str | Path | bytes) -> float:
    """Hasler-Suesstrunk colourfulness of the file's colours (0 for grayscale or DICOM)."""
    if isinstance(path, bytes):
        path = io.BytesIO(path)
    try:
        with warnings.catch_warnings():
            # Pillow's warnings on oddities it reads past (a TIFF tag beyond the end, corrupt
            # EXIF) were already ignored by the contract's decode; stderr is for errors.
            warnings.simplefilter("ignore")
            with Image.open(path, formats=PILLOW_FORMATS) as image:
                if image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                    return 0.0
                image.draft("RGB", (256, 256))
                image.thumbnail((256, 256))
                rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    except (OSError, ValueError, SyntaxError):
        return 0.0  # DICOM and other formats the contract decodes without colour
    return colourfulness(rgb)


def colourfulness(rgb: np.ndarray) -> float:
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = red - green, 0.5 * (red + green) - blue
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def image_features(
    gray: np.ndarray, model_input: np.ndarray, template: np.ndarray | None, colour: float
) -> dict[str, float]:
    """Statistics of a scan that separate chest X-rays from other images.

    `gray` is the decoded 2-D scan, `model_input` what the model sees (its fine detail is
    what a low-resolution source lacks), `template` the mean training scan at 16 px.
    """
    small = resize_gray(gray, ANALYSIS_SIDE)[:, :, 0].astype(np.float64)
    contrast = small.std()
    gradient = np.abs(np.diff(small, axis=0)).mean() + np.abs(np.diff(small, axis=1)).mean()
    half = resize_gray(gray, SYMMETRY_SIDE)[:, :, 0].astype(np.float64)
    features = {
        "colourfulness": float(colour),
        "contrast": float(contrast),
        "edge_density": float(gradient / (contrast + 1.0)),
        "bright_fraction": float((small > 240).mean()),
        "dark_fraction": float((small < 12).mean()),
        "histogram_entropy": _histogram_entropy(small),
        "symmetry": _correlation(half, half[:, ::-1]),
        "detail": _fine_detail(model_input[:, :, 0]),
    }
    if template is not None:
        layout = resize_gray(gray, TEMPLATE_SIDE)[:, :, 0].astype(np.float64)
        features["chest_layout"] = _correlation(layout, template)
    return features


def _histogram_entropy(pixels: np.ndarray, bins: int = 32) -> float:
    counts = np.histogram(pixels, bins=bins, range=(0, 256))[0] / pixels.size
    counts = counts[counts > 0]
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


def gate_failures(features: dict[str, float], bounds: dict[str, list[float]]) -> list[str]:
    """Reasons, one per feature outside its training range (empty when the scan passes)."""
    reasons = []
    for name, (low, high) in bounds.items():
        value = features.get(name)
        if value is None or low <= value <= high:
            continue
        meaning = GATE_FEATURES.get(name, ("", "outside the training range"))[1]
        limit = f"below {low:.3g}" if value < low else f"above {high:.3g}"
        reasons.append(f"{meaning} ({name} {value:.3g}, {limit})")
    return reasons


# --- distance to the training scans in the model's feature space ---


@dataclass(frozen=True)
class FeatureDistance:
    """Mahalanobis distance of a scan's features to the training scans of its predicted class,
    each class with its own covariance, in the subspace of the training features' main
    directions: z = P^T (f - center); distance = |W_c (z - mean_c)| for the predicted class c.
    `threshold` is the largest distance a scan may have and still be trusted; a class with no
    training scans has no distribution, so every scan predicted as it is out of it."""

    center: np.ndarray  # (dim,)
    projection: np.ndarray  # (dim, k)
    classes: tuple[int, ...]  # the labels that had training scans
    class_means: np.ndarray  # (len(classes), k)
    class_whitening: np.ndarray  # (len(classes), k, k)
    threshold: float

    @classmethod
    def from_json(cls, section: dict) -> FeatureDistance:
        center = np.asarray(section["center"], dtype=np.float64)
        projection = np.asarray(section["projection"], dtype=np.float64)
        means = np.asarray(section["class_means"], dtype=np.float64)
        whitening = np.asarray(section["class_whitening"], dtype=np.float64)
        classes = tuple(int(c) for c in section["classes"])
        k = projection.shape[-1] if projection.ndim == 2 else -1
        if (center.ndim != 1 or projection.shape[0] != center.shape[0]
                or means.shape != (len(classes), k) or whitening.shape != (len(classes), k, k)):
            raise ValueError("center (dim), projection (dim, k), class_means (classes, k) and "
                             "class_whitening (classes, k, k) do not fit together")
        threshold = float(section["threshold"])
        if not (np.isfinite(threshold) and threshold > 0):
            raise ValueError(f"threshold {threshold} is not > 0")
        return cls(center, projection, classes, means, whitening, threshold)

    @property
    def dim(self) -> int:
        return int(self.center.shape[0])

    def distance(self, features: np.ndarray, label: int) -> float:
        if label not in self.classes:
            return float("inf")
        index = self.classes.index(label)
        z = (np.asarray(features, dtype=np.float64) - self.center) @ self.projection
        return float(np.linalg.norm(self.class_whitening[index] @ (z - self.class_means[index])))


# --- settings and the decision ---


@dataclass(frozen=True)
class TrustSettings:
    """What `assess` needs from the manifest; `fitted` is False for a model that has none."""

    temperature: float = 1.0
    min_confidence: float = 0.0
    gate_bounds: dict[str, list[float]] = field(default_factory=dict)
    template: tuple[float, ...] = ()
    check_variants: bool = True
    feature_distance: FeatureDistance | None = None
    fitted: bool = False

    @classmethod
    def from_manifest(cls, manifest: dict) -> TrustSettings:
        """The manifest's calibration and trust sections; ManifestError when they are unusable
        (a hand-edited or damaged manifest must not turn into a traceback on the first scan)."""
        try:
            calibration = manifest.get("calibration") or {}
            trust = manifest.get("trust") or {}
            settings = cls(
                temperature=float(calibration.get("temperature", 1.0)),
                min_confidence=float(trust.get("min_confidence", 0.0)),
                gate_bounds={k: [float(b) for b in v]
                             for k, v in trust.get("gate_bounds", {}).items()},
                template=tuple(float(t) for t in trust.get("chest_template", ())),
                check_variants=bool(trust.get("check_variants", True)),
                feature_distance=(FeatureDistance.from_json(trust["feature_distance"])
                                  if trust.get("feature_distance") else None),
                fitted=bool(trust),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ManifestError(f"unusable calibration/trust section ({error})") from None
        settings._validate()
        return settings

    def _validate(self) -> None:
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ManifestError(f"calibration temperature {self.temperature} is not > 0")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ManifestError(f"trust min_confidence {self.min_confidence} is not in [0, 1]")
        if any(len(bounds) != 2 for bounds in self.gate_bounds.values()):
            raise ManifestError("trust gate_bounds must be [low, high] pairs")
        if self.template and len(self.template) != TEMPLATE_SIDE * TEMPLATE_SIDE:
            raise ManifestError(f"trust chest_template must hold {TEMPLATE_SIDE}x{TEMPLATE_SIDE} values")

    @property
    def template_array(self) -> np.ndarray | None:
        if not self.template:
            return None
        return np.asarray(self.template, dtype=np.float64).reshape(TEMPLATE_SIDE, TEMPLATE_SIDE)


@dataclass(frozen=True)
class Assessment:
    flag: str
    reason: str
    label: int
    confidence: float  # calibrated probability of `label`
    stability: float  # that probability averaged over the scan and its variants
    probabilities: np.ndarray  # calibrated
    raw_probabilities: np.ndarray
    variant_labels: dict[str, int]
    features: dict[str, float]
    feature_distance: float | None = None

    def to_record(self) -> dict:
        """Flat fields for a result line (JSON or CSV): the flag, its reason, the
        calibrated confidence of the label (also averaged over the re-acquired variants) and
        the distance to the training scans in feature space (None without that check)."""
        return {
            "flag": self.flag,
            "reason": self.reason,
            "calibrated_confidence": round(self.confidence, 4),
            "stable_confidence": round(self.stability, 4),
            "feature_distance": (None if self.feature_distance is None
                                 or not np.isfinite(self.feature_distance)
                                 else round(self.feature_distance, 3)),
        }


def assess_with_classifier(classifier, path: str | Path, gray: np.ndarray) -> Assessment:
    """`assess` of the already decoded `gray` scan of `path` with an
    `edge.runtime.TFLiteClassifier` and its manifest's thresholds."""
    return assess(classifier_run_fn(classifier), gray, classifier.input_size,
                  classifier.trust_settings, colour=file_colourfulness(path),
                  features_fn=classifier_features_fn(classifier))


def assess_file(
    run_fn: RunFn,
    path: str | Path,
    size: int,
    settings: TrustSettings,
    features_fn: FeaturesFn | None = None,
) -> Assessment:
    """Decode `path` through the contract and assess it; raises edge.contract.ScanError."""
    gray = read_grayscale(path)
    return assess(run_fn, gray, size, settings, colour=file_colourfulness(path),
                  features_fn=features_fn)


def assess(
    run_fn: RunFn,
    gray: np.ndarray,
    size: int,
    settings: TrustSettings,
    colour: float = 0.0,
    features_fn: FeaturesFn | None = None,
) -> Assessment:
    """Run the model on the scan and its acquisition variants and decide a flag.

    `gray` is the decoded 2-D uint8 scan (`edge.contract.read_grayscale`), `colour` the
    colourfulness of the file it came from (`file_colourfulness`). The feature distance is
    checked when the settings have one; it then needs `features_fn`.
    """
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ScanError("assess needs a 2-D uint8 grayscale scan")
    model_input = resize_gray(gray, size)
    variants = acquisition_variants(model_input) if settings.check_variants else {}
    raw = np.asarray(run_fn(np.stack([model_input, *variants.values()])), dtype=np.float64)
    calibrated = apply_temperature(raw, settings.temperature)
    features = image_features(gray, model_input, settings.template_array, colour)
    distance = None
    if settings.feature_distance is not None:
        if features_fn is None:
            raise ValueError("the settings check the feature distance: pass features_fn")
        label = int(np.argmax(calibrated[0]))
        distance = settings.feature_distance.distance(features_fn(model_input), label)
    return judge(raw[0], calibrated, list(variants), features, settings, distance)


def judge(
    raw: np.ndarray,
    calibrated: np.ndarray,
    variant_names: list[str],
    features: dict[str, float],
    settings: TrustSettings,
    feature_distance: float | None = None,
) -> Assessment:
    """The assessment from the model's outputs: `calibrated` has one row for the scan, then
    one per acquisition variant; `feature_distance` is the scan's distance to the training
    scans of its predicted class in feature space. The first failing check wins, most severe
    first."""
    label = int(np.argmax(calibrated[0]))
    variant_labels = {name: int(np.argmax(p)) for name, p in zip(variant_names, calibrated[1:])}
    stability = stable_confidence(calibrated, label)
    flag, reason = FLAG_OK, "passed the X-ray gate; confident and stable under re-acquisition"
    failures = gate_failures(features, settings.gate_bounds)
    changed = [name.replace("_", " ") for name, other in variant_labels.items() if other != label]
    if failures:
        flag, reason = FLAG_OUT_OF_DISTRIBUTION, "unlike the training X-rays: " + "; ".join(
            failures
        )
    elif feature_distance is not None and feature_distance > settings.feature_distance.threshold:
        flag = FLAG_OUT_OF_DISTRIBUTION
        reason = (f"unlike the training X-rays to the model itself: its features are far from "
                  f"those of the training scans of the class it predicts (distance "
                  f"{feature_distance:.1f} > {settings.feature_distance.threshold:.1f})")
    elif stability < settings.min_confidence:
        flag = FLAG_UNCERTAIN
        reason = (f"unstable: the label changes when the scan is re-acquired as "
                  f"{', '.join(changed)}" if changed else "low calibrated confidence")
        reason += f" (confidence over variants {stability:.2f} < {settings.min_confidence:.2f})"
    elif not settings.fitted:
        reason = "no calibration or X-ray gate in the model manifest: only stability checked"
    return Assessment(
        flag=flag,
        reason=reason,
        label=label,
        confidence=float(calibrated[0, label]),
        stability=stability,
        probabilities=calibrated[0],
        raw_probabilities=raw,
        variant_labels=variant_labels,
        features=features,
        feature_distance=feature_distance,
    )


def stable_confidence(calibrated: np.ndarray, label: int) -> float:
    """Calibrated probability of `label`, averaged over the scan and its variants: low when
    the model is unsure or when a slight re-acquisition changes its mind."""
    return float(np.mean(calibrated[:, label]))


# --- running a model ---


def classifier_run_fn(classifier) -> RunFn:
    """A RunFn over `edge.runtime.TFLiteClassifier` (or anything with `probabilities(scan)`)."""

    def run_fn(batch: np.ndarray) -> np.ndarray:
        return np.stack([classifier.probabilities(scan) for scan in batch])

    return run_fn


def classifier_features_fn(classifier) -> FeaturesFn | None:
    """The classifier's `features`, or None for a model without a features output."""
    return classifier.features if classifier.has_features else None
