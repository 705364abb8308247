"""`lungcnn calibrate RUN_DIR`: calibrated confidence and abstention thresholds for a run.

Writes into the run manifest, and into the manifest of every `model_*.tflite` beside it (each
fitted with its own predictions, so an int8 model gets the thresholds of the int8 model):
  "calibration": temperature T (probabilities become softmax(log p / T)) and the expected
                 calibration error (ECE) before and after, on validation and on test;
  "trust":       thresholds for `edge.trust.assess`: the X-ray gate (image statistics of the
                 training scans), the minimum calibrated confidence, the chest template, and
                 (for models with a features output) the class means, whitening and
                 threshold of the distance to the training scans in feature space.
Everything is fitted on the run's train/ and validation files only; test/ is only reported.

The temperature is fitted on the validation scans together with their acquisition variants
(edge.trust.VARIANTS: low resolution + JPEG, blur, lower contrast, reframed). A model that is
right on every clean validation scan would otherwise get T < 1, i.e. be made even more
confident, while its real failure is on scans from other sources and devices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from lungcnn.edge.contract import CLASS_NAMES, ScanError, first_line, read_grayscale, resize_gray
from lungcnn.edge.manifest import ManifestError, manifest_path, read_manifest, write_json_atomic
from lungcnn.edge.trust import (
    FLAG_OK,
    FLAG_OUT_OF_DISTRIBUTION,
    FLAG_UNCERTAIN,
    GATE_FEATURES,
    PROB_FLOOR,
    TEMPLATE_SIDE,
    VARIANTS,
    FeatureDistance,
    FeaturesFn,
    RunFn,
    TrustSettings,
    acquisition_variants,
    apply_temperature,
    file_colourfulness,
    image_features,
    judge,
    stable_confidence,
)
from lungcnn.calibrate.source_rule import apply_rule, read_rule
from lungcnn.trainer.dataset import label_of

ECE_BINS = 15
TEMPERATURE_RANGE = (0.25, 20.0)
# Share of clean validation scans the confidence threshold may turn away on its own.
CONFIDENCE_ABSTAIN_BUDGET = 0.03
# Share of validation scans and their acquisition variants the feature distance may turn
# away. Chosen with the rule itself on the open-set proxy (benchmarks/open_set.py: train/
# only), before the feature distance was measured on test.
FEATURE_ABSTAIN_BUDGET = 0.05
# Dimensions of the feature subspace the class distributions are fitted in (at most).
FEATURE_COMPONENTS = 32
# Gate bounds: the 1st..99th percentile of the training scans, widened on each side by
# GATE_MARGIN times the 1st..99th percentile spread (an a-priori rule, not tuned to any
# non-X-ray set).
GATE_PERCENTILES = (1.0, 99.0)
GATE_MARGIN = 0.5
# Floors of the upper bounds, so that a plausible X-ray is never refused for them: colour in a
# figure (an arrow, a label) is rare but real, and a brighter exposure saturates more pixels.
MIN_UPPER_BOUNDS = {"colourfulness": 8.0, "bright_fraction": 0.35}
EXIT_OK, EXIT_ERROR = 0, 2


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Weighted mean |accuracy - confidence| over equal-width confidence bins."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray, t: float) -> float:
    calibrated = apply_temperature(probabilities, t)
    return float(-np.log(calibrated[np.arange(len(labels)), labels]).mean())


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T minimising the NLL of softmax(log p / T): golden-section search on log T."""
    labels = np.asarray(labels, dtype=int)
    low, high = (math.log(v) for v in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2

    def loss(log_t: float) -> float:
        return negative_log_likelihood(probabilities, labels, math.exp(log_t))

    a, b = low, high
    for _ in range(60):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if loss(c) <= loss(d):
            b = d
        else:
            a = c
    return float(math.exp((a + b) / 2))


def fit_gate(feature_rows: list[dict[str, float]]) -> dict[str, list[float]]:
    """Per-feature [low, high] from training scans; the unused side of a one-sided feature
    is left open (+-inf is not JSON, so a very large number stands for it)."""
    bounds = {}
    for name, (side, _) in GATE_FEATURES.items():
        values = np.array([row[name] for row in feature_rows if name in row])
        if values.size == 0:
            continue
        p_low, p_high = np.percentile(values, GATE_PERCENTILES)
        margin = GATE_MARGIN * (p_high - p_low)
        low = float(p_low - margin) if side in ("low", "both") else -1e9
        high = float(p_high + margin) if side in ("high", "both") else 1e9
        high = max(high, MIN_UPPER_BOUNDS.get(name, high))
        bounds[name] = [round(low, 6), round(high, 6)]
    return bounds


def chest_template(grays: list[np.ndarray]) -> np.ndarray:
    """The mean training scan at 16 x 16 pixels: where a chest X-ray is bright and dark."""
    stack = np.stack([resize_gray(g, TEMPLATE_SIDE)[:, :, 0].astype(np.float64) for g in grays])
    return stack.mean(axis=0)


def calibrate_model(
    run_fn: RunFn,
    size: int,
    data_dir: Path,
    split: dict[str, list[str]],
    class_names: list[str] | tuple[str, ...] = CLASS_NAMES,
    features_fn: FeaturesFn | None = None,
) -> tuple[dict, dict]:
    """Fit the temperature and trust thresholds of one model; returns (calibration, trust).
    With `features_fn` (a model with a features output) also the feature distance."""
    if not split.get("train") or not split.get("val"):
        raise ValueError("the run's split has no training or no validation files")
    train = _load_split(data_dir, split["train"], class_names)
    val = _load_split(data_dir, split["val"], class_names)
    template = chest_template([gray for gray, _, _ in train])
    gate = fit_gate([_features(item, size, template) for item in train])

    val_labels = np.array([label for _, label, _ in val])
    blocks = _predict_with_variants(run_fn, val, size)  # (scans, 1 + variants, classes)
    temperature = fit_temperature(blocks.reshape(-1, blocks.shape[2]),
                                  np.repeat(val_labels, blocks.shape[1]))
    calibrated = apply_temperature(blocks, temperature)
    stability = np.array([stable_confidence(block, int(np.argmax(block[0])))
                          for block in calibrated])
    min_confidence = float(np.quantile(stability, CONFIDENCE_ABSTAIN_BUDGET, method="lower"))
    calibration = calibration_section(blocks, calibrated, val_labels, temperature)
    if split.get("test"):
        calibration.update(_test_ece(run_fn, size, data_dir, split["test"], class_names,
                                     temperature))
    trust = {
        "min_confidence": round(min_confidence, 4),
        "check_variants": True,
        "gate_bounds": gate,
        "chest_template": [round(float(v), 2) for v in template.ravel()],
        "rule": f"gate: training percentiles {GATE_PERCENTILES} widened by {GATE_MARGIN} of "
        f"their spread; min_confidence: the {CONFIDENCE_ABSTAIN_BUDGET:.0%} quantile, on clean "
        "validation scans, of the calibrated confidence averaged over scan and variants",
        "fitted_on": "train (gate, template), validation (temperature, confidence)",
    }
    val_distances = None
    if features_fn is not None:
        trust["feature_distance"], val_distances = fit_feature_distance(
            features_fn, train, val, size, blocks.argmax(axis=2))
        trust["fitted_on"] = ("train (gate, template, feature means and covariance), "
                              "validation (temperature, confidence, feature threshold)")
    settings = TrustSettings.from_manifest(
        {"calibration": {"temperature": temperature}, "trust": trust}
    )
    flags = np.array([
        judge(blocks[i, 0], calibrated[i], list(VARIANTS),
              _features(item, size, settings.template_array), settings,
              None if val_distances is None else float(val_distances[i, 0])).flag
        for i, item in enumerate(val)
    ])
    trust["val_flags"] = {flag: float(np.mean(flags == flag))
                          for flag in (FLAG_OK, FLAG_UNCERTAIN, FLAG_OUT_OF_DISTRIBUTION)}
    return calibration, trust


def calibration_section(
    blocks: np.ndarray, calibrated: np.ndarray, val_labels: np.ndarray, temperature: float
) -> dict:
    """The manifest's "calibration": the temperature and the ECE before and after it, on the
    validation scans and on their acquisition variants (`blocks`: (scans, 1 + variants,
    classes) probabilities; `calibrated`: the same after the temperature)."""
    classes = blocks.shape[2]
    variant_labels = np.repeat(val_labels, blocks.shape[1] - 1)
    return {
        "method": "temperature on log-probabilities, fitted on validation + its acquisition "
        "variants (NLL)",
        "temperature": round(temperature, 4),
        "prob_floor": PROB_FLOOR,
        "ece_bins": ECE_BINS,
        "ece_val_before": expected_calibration_error(blocks[:, 0], val_labels),
        "ece_val_after": expected_calibration_error(calibrated[:, 0], val_labels),
        "ece_val_variants_before": expected_calibration_error(
            blocks[:, 1:].reshape(-1, classes), variant_labels),
        "ece_val_variants_after": expected_calibration_error(
            calibrated[:, 1:].reshape(-1, classes), variant_labels),
        "val_files": len(val_labels),
    }


def _test_ece(run_fn: RunFn, size: int, data_dir: Path, files: list[str], class_names,
              temperature: float) -> dict:
    """ECE on the test split before and after the temperature: reported, never fitted on."""
    test = _load_split(data_dir, files, class_names)
    probabilities = _predict(run_fn, [resize_gray(gray, size) for gray, _, _ in test])
    labels = np.array([label for _, label, _ in test])
    return {
        "ece_test_before": expected_calibration_error(probabilities, labels),
        "ece_test_after": expected_calibration_error(
            apply_temperature(probabilities, temperature), labels),
    }


def fit_feature_distance(
    features_fn: FeaturesFn,
    train: list[tuple],
    val: list[tuple],
    size: int,
    val_predictions: np.ndarray,
) -> tuple[dict, np.ndarray]:
    """The feature distance of `edge.trust.FeatureDistance`, fitted on the training scans'
    features; its threshold is the (1 - FEATURE_ABSTAIN_BUDGET) quantile of the distances of
    the validation scans and their acquisition variants, each to the class the model predicts
    for it (`val_predictions`, (validation scans, 1 + variants)). Returns the manifest section
    and those distances, of the same shape."""
    features = np.stack([features_fn(resize_gray(gray, size)) for gray, _, _ in train])
    labels = np.array([label for _, label, _ in train])
    section = {key: _significant(value) if isinstance(value, np.ndarray) else value
               for key, value in fit_class_whitening(features, labels).items()}
    section["threshold"] = 1.0
    stored = FeatureDistance.from_json(section)  # measure with exactly what the device reads
    distances = np.array([
        [stored.distance(features_fn(image), int(label))
         for image, label in zip(_with_variants(gray, size), labels_of_images)]
        for (gray, _, _), labels_of_images in zip(val, val_predictions)
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
    section["train_files"] = len(train)
    return section, distances


def fit_class_whitening(features: np.ndarray, labels: np.ndarray) -> dict:
    """center, projection onto the main directions of the training features, and for each
    class present its mean and W = S^(-1/2), S its shrunk covariance in that subspace."""
    from sklearn.covariance import LedoitWolf

    features = np.asarray(features, dtype=np.float64)
    center = features.mean(axis=0)
    components = min(FEATURE_COMPONENTS, features.shape[1], len(features) - 1)
    projection = np.linalg.svd(features - center, full_matrices=False)[2][:components].T
    projected = (features - center) @ projection
    classes = [int(c) for c in np.unique(labels)]
    means, whitening = [], []
    for label in classes:
        members = projected[labels == label]
        covariance = LedoitWolf().fit(members).covariance_
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        eigenvalues = np.maximum(eigenvalues, eigenvalues.max() * 1e-6)
        means.append(members.mean(axis=0))
        whitening.append((eigenvectors / np.sqrt(eigenvalues)) @ eigenvectors.T)
    return {"center": center, "projection": projection, "classes": classes,
            "class_means": np.stack(means), "class_whitening": np.stack(whitening)}


def _significant(values: np.ndarray, digits: int = 7) -> list:
    """Nested lists of floats with `digits` significant digits (float32 precision): the
    whitening can be large along directions the training features barely vary in, so a
    fixed number of decimals would not do."""
    return np.vectorize(lambda v: float(f"{v:.{digits}g}"))(values).tolist()


def _with_variants(gray: np.ndarray, size: int) -> list[np.ndarray]:
    model_input = resize_gray(gray, size)
    return [model_input, *acquisition_variants(model_input).values()]


def _predict_with_variants(run_fn: RunFn, items: list[tuple], size: int) -> np.ndarray:
    """Probabilities of each scan followed by its acquisition variants: (n, 1 + V, classes)."""
    rows = [np.asarray(run_fn(np.stack(_with_variants(gray, size)))) for gray, _, _ in items]
    return np.stack(rows).astype(np.float64)


def _features(item, size: int, template: np.ndarray) -> dict[str, float]:
    gray, _, colour = item
    return image_features(gray, resize_gray(gray, size), template, colour)


def _load_split(data_dir: Path, rel_paths: list[str], class_names) -> list[tuple]:
    """(gray, label, colourfulness) per file; the class is the parent folder's name."""
    items = []
    for rel in rel_paths:
        path = data_dir / rel
        label = label_of(rel, class_names)
        try:
            gray = read_grayscale(path)
        except ScanError as error:
            raise ScanError(f"{path}: {error}") from None
        items.append((gray, label, file_colourfulness(path)))
    return items


def _predict(run_fn: RunFn, inputs: list[np.ndarray], batch: int = 16) -> np.ndarray:
    if not inputs:
        return np.zeros((0, len(CLASS_NAMES)))
    return np.concatenate(
        [np.asarray(run_fn(np.stack(inputs[i : i + batch])), dtype=np.float64)
         for i in range(0, len(inputs), batch)]
    )


def keras_model_fns(model_path: Path) -> tuple[RunFn, FeaturesFn | None]:
    from tensorflow import keras

    try:
        model = keras.models.load_model(model_path, compile=False)
    except Exception as error:  # Keras raises many types for a bad archive
        raise ValueError(f"{model_path}: not a loadable Keras model ({first_line(error)})") from None
    return keras_fns(model)


def keras_fns(model) -> tuple[RunFn, FeaturesFn | None]:
    """(probabilities, features) of a Keras model; features as its converted .tflite has them."""
    from lungcnn.trainer.architectures import with_features_output

    both = with_features_output(model, int(model.output_shape[-1]))

    def run_fn(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(batch.astype(np.float32)))

    def features_fn(scan: np.ndarray) -> np.ndarray:
        return np.asarray(both.predict_on_batch(scan[None].astype(np.float32))[1])[0]

    return run_fn, (features_fn if both is not model else None)


def tflite_model_fns(model_path: Path) -> tuple[RunFn, FeaturesFn | None]:
    from lungcnn.edge.runtime import TFLiteClassifier
    from lungcnn.edge.trust import classifier_features_fn, classifier_run_fn

    classifier = TFLiteClassifier(model_path, trust=False)  # its old thresholds are replaced
    return classifier_run_fn(classifier), classifier_features_fn(classifier)


def calibrate_run(
    target: Path, data_dir: Path | None = None, echo: Callable[[str], None] = print
) -> dict[Path, dict]:
    """Calibrate model.keras and every model_*.tflite of the run directory `target`, or the
    single .tflite file `target` (its manifest's "training" section names split and data);
    update their manifests in place."""
    if target.suffix == ".tflite":
        training = read_manifest(target).get("training") or {}
        if "split" not in training:
            raise ManifestError(f"{target}: manifest has no training split to calibrate on")
        models, run = [(target, tflite_model_fns)], training
    else:
        keras_model = target / "model.keras"
        run = read_manifest(keras_model)
        models = [(keras_model, keras_model_fns)] if keras_model.exists() else []
        models += [(path, tflite_model_fns) for path in sorted(target.glob("model_*.tflite"))]
    data_dir = Path(data_dir or run["data_dir"])
    written = {}
    for model_path, model_fns in models:
        manifest = read_manifest(model_path)
        run_fn, features_fn = model_fns(model_path)
        calibration, trust = calibrate_model(
            run_fn, int(manifest["input"]["size"]), data_dir, run["split"],
            manifest["class_names"], features_fn,
        )
        manifest["calibration"], manifest["trust"] = calibration, trust
        path = manifest_path(model_path)
        write_json_atomic(path, manifest)
        written[path] = manifest
        echo(_summary(model_path, calibration, trust))
    return written


def _summary(model_path: Path, calibration: dict, trust: dict) -> str:
    ece = ", ".join(
        f"{key.removeprefix('ece_')} {calibration[key]:.3f}"
        for key in ("ece_val_before", "ece_val_after", "ece_test_before", "ece_test_after")
        if key in calibration
    )
    flags = ", ".join(f"{k} {v:.0%}" for k, v in trust["val_flags"].items())
    distance = trust.get("feature_distance")
    limit = f"; feature distance <= {distance['threshold']:.2f}" if distance else ""
    return (f"{model_path.name}: T={calibration['temperature']:.3f}; ECE {ece}; "
            f"min confidence {trust['min_confidence']:.3f}{limit}; validation flags: {flags}")


def calibrate_command(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR|MODEL.tflite",
            help="A training run directory (model.keras + manifest.json), or one converted "
            ".tflite model whose manifest carries the run's split.",
        ),
    ],
    data_dir: Annotated[
        Path | None,
        typer.Option("--data", metavar="DIR", help="Dataset root.",
                     show_default="the run manifest's data_dir"),
    ] = None,
    loso: Annotated[
        Path | None,
        typer.Option("--loso", metavar="RESULTS.json",
                     help="Then apply the trust rule chosen on held-out sources by "
                     "`lungcnn loso` (its results JSON) to the .tflite models."),
    ] = None,
) -> None:
    """Fit calibrated confidence and abstention thresholds (for edge-classify's flags).

    Fitted on the run's training and validation files only; written into the run manifest and every model_*.tflite manifest in RUN_DIR (run it again after `lungcnn convert`), or into the manifest of MODEL.tflite.

    Exit codes: 0 done; 2 unusable run, model or data.
    Not a medical device: do not use for diagnosis without a clinical study."""
    try:
        rule = read_rule(loso) if loso is not None else None
        written = calibrate_run(run_dir, data_dir, echo=typer.echo)
        models = [p.with_suffix(".tflite") for p in written if rule]
        for model_path in (m for m in models if m.is_file()):
            trust = apply_rule(model_path, rule)
            typer.echo(f"{model_path.name}: held-out-source rule: min confidence "
                       f"{trust['min_confidence']:.3f}, feature distance <= "
                       f"{(trust.get('feature_distance') or {}).get('threshold')}")
    except (ManifestError, ScanError, KeyError, ValueError, OSError) as error:
        typer.echo(f"lungcnn calibrate: {run_dir}: {error}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
