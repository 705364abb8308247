"""The Keras model being converted: a trainer run's model.keras, loaded and checked against
its run manifest (TensorFlow is imported here, only when a conversion runs)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from lungcnn.convert.errors import ConvertError
from lungcnn.edge.manifest import ManifestError, manifest_path, read_manifest, sha256_file
from lungcnn.edge.contract import Preprocessor
from lungcnn.edge.runtime import ModelError, input_contract
from lungcnn.trainer.architectures import with_features_output
from lungcnn.trainer.keras_model import load_keras


@dataclass(frozen=True)
class KerasSource:
    path: Path
    model: object
    export_model: object  # the model with its features output, when it has one
    run_manifest: dict
    size: int
    data_dir: Path
    preprocessor: Preprocessor  # the input contract the model was trained with


def load_source(model_path: Path, data_dir: Path | None) -> KerasSource:
    if not model_path.is_file():
        raise ConvertError(f"{model_path}: model file not found")
    if model_path.suffix != ".keras" or not zipfile.is_zipfile(model_path):
        raise ConvertError(f"{model_path}: not a Keras model file (a .keras archive is expected)")
    try:
        run_manifest = read_manifest(model_path)
    except ManifestError as error:
        raise ConvertError(f"{error}; convert needs the trainer's run manifest") from None
    _check_run_manifest(model_path, run_manifest)
    model = _load_keras(model_path)
    size = _input_size(model_path, model, run_manifest)
    folder = data_dir or run_manifest.get("data_dir")  # None: a manifest without data_dir
    if folder is None or not Path(folder).is_dir():
        raise ConvertError(f"dataset folder {folder} not found (pass --data DIR)")
    export_model = with_features_output(model, len(run_manifest["class_names"]))
    try:
        preprocessor = input_contract(model_path, run_manifest)
    except ModelError as error:
        raise ConvertError(str(error)) from None
    return KerasSource(model_path, model, export_model, run_manifest, size, Path(folder),
                       preprocessor)


def _check_run_manifest(model_path: Path, run_manifest: dict) -> None:
    where = manifest_path(model_path)
    split = run_manifest.get("split")
    if not isinstance(split, dict) or not split.get("train"):
        raise ConvertError(f"{where}: no split lists (split.train missing)")
    expected = run_manifest.get("model_sha256")
    if expected and expected != sha256_file(model_path):
        raise ConvertError(f"{model_path}: SHA-256 differs from model_sha256 in {where}")


def _load_keras(model_path: Path):
    _import_tensorflow()
    try:
        return load_keras(model_path)
    except ModelError as error:
        raise ConvertError(str(error)) from None


def _import_tensorflow():
    try:
        import tensorflow as tf
    except ImportError:
        raise ConvertError(
            "TensorFlow is not installed; converting needs it: pip install 'lungcnn[train]'"
        ) from None
    return tf


def _input_size(model_path: Path, model, run_manifest: dict) -> int:
    shape = tuple(model.input_shape)
    size = run_manifest["input"]["size"]
    if shape[1:] != (size, size, 1):
        raise ConvertError(
            f"{model_path}: input shape {shape[1:]} does not match the manifest's "
            f"{size}x{size}x1 grayscale input"
        )
    return size
