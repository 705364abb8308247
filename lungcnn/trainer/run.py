"""One training run: split and decode the data, fit, evaluate, write the run directory.

RUN_DIR/model.keras, manifest.json, history.json, metrics.json and plots/*.png; the layout
is the shared contract read by convert, edge and benchmarks.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcnn.edge.contract import LungFieldInput, Preprocessor, ScanSpec
from lungcnn.edge.segmenter import LungSegmenter
from lungcnn.edge.manifest import base_manifest, library_versions, sha256_file, write_json_atomic
from lungcnn.trainer.architectures import ArchSpec
from lungcnn.trainer.config import TrainConfig
from lungcnn.trainer.dataset import (
    DecodedScans,
    Sample,
    UnreadableScans,
    decode_scans,
    fingerprint_files,
    leaked_test_files,
    split_sha256,
)
from lungcnn.trainer.datasets import (
    Dataset,
    combine,
    counts_by_source,
    provenance,
    read_dataset,
)
from lungcnn.trainer.split import duplicate_groups, limit_per_class, split_train_val
from lungcnn.trainer.metrics import evaluate, evaluate_by_source



@dataclass(frozen=True)
class PreparedData:
    root: Path  # every sample is root / rel_path
    datasets: list[Dataset]
    train: DecodedScans
    val: DecodedScans
    test: DecodedScans
    test_dedup: list[Sample]  # test samples with no exact or near duplicate in the pool
    preprocessor: Preprocessor

    def split_lists(self) -> dict[str, list[str]]:
        return {
            "train": [s.rel_path for s in self.train.samples],
            "val": [s.rel_path for s in self.val.samples],
            "test": [s.rel_path for s in self.test.samples],
            "test_dedup": [s.rel_path for s in self.test_dedup],
        }

    def samples(self) -> list[Sample]:
        return self.train.samples + self.val.samples + self.test.samples


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    metrics: dict  # {"val", "test", "test_dedup"}: trainer.metrics.evaluate results
    best_epoch: int
    epochs_run: int
    wall_seconds: float


def prepare_data(data_dirs: Sequence[Path], config: TrainConfig, link_dir: Path) -> PreparedData:
    """Decode every scan used once. Validation is carved out of every dataset's train pool
    (stratified by source and class, duplicates kept on one side); test is the datasets'
    `test` scans, and its leak check compares it with the whole pool. Scans of
    `config.exclude_sources`, and scans whose finding is in `config.exclude_findings`, are
    left out entirely.

    Raises DatasetError (layout) or UnreadableScans."""
    datasets = [read_dataset(path) for path in data_dirs]
    root, samples = combine(datasets, link_dir)
    samples = [s for s in samples if config.keeps(s)]
    all_train = [s for s in samples if s.split == "train"]
    pool = limit_per_class(all_train, config.limit_per_class)
    test = limit_per_class([s for s in samples if s.split == "test"], config.limit_per_class)
    preprocessor = preprocessor_for(config)
    decoded = decode_scans(root, pool + test, preprocessor)
    prints = {s.rel_path: p for s, p in zip(decoded.samples, decoded.fingerprints)}
    others, failures = fingerprint_files(
        root, [s.rel_path for s in all_train if s.rel_path not in prints]
    )
    if failures:
        raise UnreadableScans(failures)
    prints.update(others)
    groups = duplicate_groups([prints[s.rel_path] for s in pool])
    train, val = split_train_val(pool, config.val_fraction, config.split_seed, groups)
    if config.dedup:
        train_hashes = {prints[s.rel_path].sha256 for s in train}
        val = [s for s in val if prints[s.rel_path].sha256 not in train_hashes]
    leaks = leaked_test_files(
        {s.rel_path: prints[s.rel_path] for s in test},
        {s.rel_path: prints[s.rel_path] for s in all_train},
    )
    return PreparedData(
        root=root,
        datasets=datasets,
        train=_subset(decoded, train),
        val=_subset(decoded, val),
        test=_subset(decoded, test),
        test_dedup=[s for s in test if s.rel_path not in leaks],
        preprocessor=preprocessor,
    )


def preprocessor_for(config: TrainConfig) -> Preprocessor:
    """The input contract of the recipe: contract 2 with `config.lung_field`'s segmenter,
    else contract 1. Raises ModelError for an unusable segmenter."""
    if config.lung_field is None:
        return Preprocessor(ScanSpec(config.input_size))
    segmenter = LungSegmenter(config.lung_field)
    lung_field = LungFieldInput(segmenter.model_path.name, segmenter.sha256,
                                config.lung_margin, config.equalize, config.mask_outside)
    return Preprocessor(ScanSpec(config.input_size, lung_field), segmenter)



def train_run(
    arch: ArchSpec,
    config: TrainConfig,
    data_dirs: Path | Sequence[Path],
    run_dir: Path,
    verbose: int = 2,
) -> RunResult:
    from lungcnn.trainer import training
    from lungcnn.trainer.plots import write_plots

    started = time.monotonic()
    data_dirs = [data_dirs] if isinstance(data_dirs, (str, Path)) else list(data_dirs)
    data = prepare_data(data_dirs, config, run_dir / "data")
    fitted = training.fit(arch.build, config, data.train, data.val, verbose=verbose)
    val_probs = training.predict(fitted.model, data.val.images, config.batch_size)
    test_probs = training.predict(fitted.model, data.test.images, config.batch_size)
    dedup_rows = _rows(data.test, data.test_dedup)
    test_dedup = DecodedScans(data.test_dedup, data.test.images[dedup_rows], [])
    metrics = {
        "val": evaluate(data.val.labels, val_probs),
        "test": evaluate(data.test.labels, test_probs),
        "test_dedup": evaluate(test_dedup.labels, test_probs[dedup_rows]),
        "by_source": {
            name: evaluate_by_source(scans.samples, probs)
            for name, scans, probs in (("val", data.val, val_probs),
                                       ("test_dedup", test_dedup, test_probs[dedup_rows]))
        },
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    if data.preprocessor.segmenter is not None:  # contract 2: it travels with the model
        data.preprocessor.segmenter.copy_to(run_dir)
    model_path = _save_model_atomic(fitted.model, run_dir / "model.keras")
    write_json_atomic(run_dir / "manifest.json", _manifest(arch, config, data, model_path))
    write_json_atomic(run_dir / "history.json", fitted.history)
    write_json_atomic(run_dir / "metrics.json", metrics)
    write_plots(run_dir / "plots", fitted.history, metrics["test"], data.test.labels, test_probs)
    return RunResult(
        run_dir,
        metrics,
        fitted.history["best_epoch"],
        len(fitted.history["loss"]),
        time.monotonic() - started,
    )


def _manifest(arch: ArchSpec, config: TrainConfig, data: PreparedData, model_path: Path) -> dict:
    split = data.split_lists()
    manifest = base_manifest(model_path, size=config.input_size, kind="keras",
                             spec=data.preprocessor.spec)
    manifest.update(
        {
            "arch": arch.name,
            "config": config.to_json(),
            "seed": config.seed,
            "model_sha256": sha256_file(model_path),
            "data_dir": str(data.root.resolve()),
            "datasets": [dataset.describe() for dataset in data.datasets],
            "split": {"seed": config.split_seed, **split, "sha256": split_sha256(split)},
            "data_summary": counts_by_source({"train": data.train.samples,
                                              "val": data.val.samples,
                                              "test": data.test.samples}),
            "sources": provenance(data.samples()),
            "versions": library_versions(),
        }
    )
    return manifest


def _save_model_atomic(model, path: Path) -> Path:
    # Keras wants a ".keras" name, so save into a private folder and rename into place.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".saving-") as folder:
        temporary = Path(folder) / path.name
        model.save(temporary)
        os.replace(temporary, path)
    return path


def _subset(decoded: DecodedScans, samples: list[Sample]) -> DecodedScans:
    rows = _rows(decoded, samples)
    return DecodedScans(
        list(samples), decoded.images[rows], [decoded.fingerprints[i] for i in rows]
    )


def _rows(decoded: DecodedScans, samples: list[Sample]) -> np.ndarray:
    position = {s.rel_path: i for i, s in enumerate(decoded.samples)}
    return np.array([position[s.rel_path] for s in samples], dtype=np.int64)

