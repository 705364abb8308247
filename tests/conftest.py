"""Fixtures shared by every stage's tests: the vendored dataset and a tiny trained run.

Stage-specific fixtures live in tests/<stage>/conftest.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASET_DIR = REPO_ROOT / "data" / "covid19-dataset"
TINY_SIZE = 64


@pytest.fixture(scope="session")
def dataset_dir() -> Path:
    return DATASET_DIR


@pytest.fixture(scope="session")
def tiny_keras_run(tmp_path_factory) -> Path:
    """A run directory in the trainer's layout holding a tiny model fitted for a few epochs
    on a handful of real scans: model.keras + manifest.json (with its split lists)."""
    tf = pytest.importorskip("tensorflow")
    keras = tf.keras
    import numpy as np

    from lungcnn.edge.contract import CLASS_NAMES, load_scan
    from lungcnn.edge.manifest import base_manifest, sha256_file, write_json_atomic

    run_dir = tmp_path_factory.mktemp("tiny_run")
    split = _tiny_split()
    images = np.stack([load_scan(DATASET_DIR / rel, TINY_SIZE) for rel, _ in split["train"]])
    labels = np.array([label for _, label in split["train"]])
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((TINY_SIZE, TINY_SIZE, 1)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(CLASS_NAMES), activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=5, batch_size=8, verbose=0)
    model_path = run_dir / "model.keras"
    model.save(model_path)
    manifest = base_manifest(model_path, size=TINY_SIZE, kind="keras")
    manifest.update(
        {
            "arch": "tiny-fixture",
            "model_sha256": sha256_file(model_path),
            "data_dir": str(DATASET_DIR),
            "split": {name: [rel for rel, _ in files] for name, files in split.items()},
        }
    )
    write_json_atomic(run_dir / "manifest.json", manifest)
    return run_dir


def _tiny_split() -> dict[str, list[tuple[str, int]]]:
    """Four scans per class for training, two per class for validation and test."""
    from lungcnn.edge.contract import CLASS_NAMES

    split: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    for label, name in enumerate(CLASS_NAMES):
        train_files = sorted((DATASET_DIR / "train" / name).iterdir())
        test_files = sorted((DATASET_DIR / "test" / name).iterdir())
        for rel in train_files[:4]:
            split["train"].append((str(rel.relative_to(DATASET_DIR)), label))
        for rel in train_files[4:6]:
            split["val"].append((str(rel.relative_to(DATASET_DIR)), label))
        for rel in test_files[:2]:
            split["test"].append((str(rel.relative_to(DATASET_DIR)), label))
    return split


@pytest.fixture(scope="session")
def tiny_tflite_models(tiny_keras_run) -> dict[str, Path]:
    """The tiny run converted by convert's API to every variant (quantization -> .tflite),
    written beside its model.keras with their manifests; int8 has uint8 input/output."""
    from lungcnn.convert.converter import ConvertOptions, convert_keras_run

    conversions = convert_keras_run(tiny_keras_run / "model.keras", ConvertOptions())
    return {c.settings.quantization: c.tflite_path for c in conversions}
