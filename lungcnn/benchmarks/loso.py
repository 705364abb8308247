"""Leave-one-source-out: for each source S, train without S, then run the device on S.

The honest estimate of how a model does at a new hospital. Each fold trains the recipe on
every other source (validation carved out of them as usual), converts it to int8, fits its
trust thresholds with `lungcnn calibrate`, and classifies every scan of S, train and test
split alike, through `lungcnn.edge.api.Classifier`: exactly what a device would answer.

A held-out scan is *covered* when some remaining source has its class in its age group (an
adult Covid scan when another source has adult Covid scans); the others, such as adult
Normal scans when the only other Normal scans are pediatric, are *open-set* cases that the
trust flags should catch. Folds resume: a fold whose records exist is not trained again
(its held-out scans are classified again when its records lack fields added since).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from lungcnn.benchmarks.lung_attention import lung_mask, lung_share
from lungcnn.edge.api import Classifier
from lungcnn.edge.decode import ScanError
from lungcnn.edge.segmenter import LungSegmenter
from lungcnn.edge.contract import CLASS_NAMES
from lungcnn.edge.manifest import write_json_atomic
from lungcnn.trainer.architectures import ArchSpec
from lungcnn.trainer.config import TrainConfig
from lungcnn.trainer.dataset import Sample
from lungcnn.trainer.datasets import combine, read_dataset

RECORDS = "heldout_records.json"
# The fields of the device's record kept for each held-out scan.
RECORD_FIELDS = ("status", "flag", "reason", "confidence", "raw_confidence",
                 "stable_confidence", "feature_distance", "nearest_class", "probabilities",
                 "error")


@dataclass(frozen=True)
class LosoConfig:
    arch: str
    data: tuple[Path, ...]
    out: Path  # fold run directories: out/<source>/
    recipe: TrainConfig
    holdout: tuple[str, ...] = ()  # () -> every source
    # Scores where each fold model looks (`benchmarks.lung_attention`); None: not measured.
    attention_segmenter: Path | None = None


def all_samples(data: Sequence[Path], link_dir: Path) -> tuple[Path, list[Sample]]:
    return combine([read_dataset(path) for path in data], link_dir)


def run_loso(config: LosoConfig, spec: ArchSpec, log: Callable[[str], None] = print) -> dict:
    """Every fold's held-out records and coverage, keyed by the held-out source."""
    root, samples = all_samples(config.data, config.out / "data")
    sources = sorted({s.source for s in samples})
    unknown = sorted(set(config.holdout) - set(sources))
    if unknown:
        raise ValueError(f"unknown source(s) {', '.join(unknown)}; sources: {', '.join(sources)}")
    folds = {}
    for source in config.holdout or sources:
        log(f"leave-one-source-out: fold {source}")
        folds[source] = run_fold(config, spec, root, samples, source, log)
    return {"arch": config.arch, "recipe": config.recipe.to_json(), "sources": sources,
            "data": [str(Path(p)) for p in config.data], "folds": folds}


def run_fold(config: LosoConfig, spec: ArchSpec, root: Path, samples: list[Sample],
             source: str, log: Callable[[str], None]) -> dict:
    fold_dir = config.out / source
    records_path = fold_dir / RECORDS
    model = fold_dir / "model_int8.tflite"
    if records_path.is_file():
        fold = json.loads(records_path.read_text())
        if all(set(RECORD_FIELDS) <= set(r) for r in fold["records"]) or not model.is_file():
            log(f"  {records_path} exists: fold reused")
            return fold
        log(f"  {records_path} lacks record fields: held-out scans classified again")
    recipe = replace(config.recipe, exclude_sources=(*config.recipe.exclude_sources, source))
    if not records_path.is_file():
        train_convert_calibrate(spec, recipe, config.data, fold_dir, log)
    held_out = held_out_samples(samples, source, recipe)
    kept = [s for s in samples if recipe.keeps(s)]
    fold = {
        "source": source,
        "trained_on": sorted({s.source for s in kept}),
        "covered_pairs": sorted({f"{CLASS_NAMES[s.label]}/{s.age_group}" for s in kept}),
        "thresholds": fitted_thresholds(model),
        "records": held_out_records(model, root, held_out, kept, config.attention_segmenter),
    }
    write_json_atomic(records_path, fold)
    return fold


def held_out_samples(samples: Sequence[Sample], source: str,
                     recipe: TrainConfig) -> list[Sample]:
    """The scans of `source` a model trained with `recipe` (which leaves it out) answers:
    all but those of a finding the recipe leaves out."""
    return [s for s in samples if s.source == source and s.finding not in recipe.exclude_findings]


def held_out_records(model: Path, root: Path, held_out: Sequence[Sample],
                     kept: Sequence[Sample], attention: Path | None = None) -> list[dict]:
    """The device's answer on each held-out scan, with its truth and coverage, and with an
    `attention` segmenter the share of its heatmap inside the lungs (`lung_share`)."""
    classifier = Classifier(model)
    reference = None if attention is None else LungSegmenter(attention)
    covered = {(s.label, s.age_group) for s in kept}
    records = []
    for sample in held_out:
        path = root / sample.rel_path
        try:
            gray = classifier.decode(path).gray
        except ScanError:
            gray = None
        record = classifier.classify(path).to_dict()
        if reference is not None and gray is not None:
            record["lung_share"] = lung_share(classifier, gray, lung_mask(reference, gray))
        records.append({
            "file": sample.rel_path,
            "label": CLASS_NAMES[sample.label],
            "age_group": sample.age_group,
            "covered": (sample.label, sample.age_group) in covered,
            "predicted": record["label"],
            **{key: record.get(key) for key in (*RECORD_FIELDS, "lung_share")},
        })
    return records


def fitted_thresholds(model: Path) -> dict:
    """The temperature, confidence and feature-distance thresholds `lungcnn calibrate`
    fitted."""
    manifest = Classifier(model).manifest
    trust = manifest.get("trust") or {}
    distance = trust.get("feature_distance") or {}
    return {"min_confidence": trust.get("min_confidence"),
            "feature_distance": distance.get("threshold"),
            "temperature": (manifest.get("calibration") or {}).get("temperature")}


def train_convert_calibrate(spec: ArchSpec, recipe: TrainConfig, data: Sequence[Path],
                             fold_dir: Path, log: Callable[[str], None]) -> None:
    from lungcnn.calibrate.calibration import calibrate_run
    from lungcnn.convert.converter import ConvertOptions, convert_keras_run
    from lungcnn.trainer.run import train_run

    if not (fold_dir / "model.keras").is_file():
        result = train_run(spec, recipe, list(data), fold_dir, verbose=0)
        log(f"  trained in {result.wall_seconds:.0f} s, best epoch {result.best_epoch}, "
            f"val accuracy {result.metrics['val']['accuracy']:.3f}")
    if not (fold_dir / "model_int8.tflite").is_file():
        convert_keras_run(fold_dir / "model.keras", ConvertOptions(quantizations=("int8",)))
    calibrate_run(fold_dir / "model_int8.tflite", echo=lambda line: log(f"  {line}"))
