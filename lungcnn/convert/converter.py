"""Library API of the converter: a trainer run's model.keras -> .tflite variants, each with
its manifest and a parity report against the Keras model.

    from lungcnn.convert.converter import ConvertOptions, convert_keras_run
    conversions = convert_keras_run("runs/x/model.keras", ConvertOptions(quantizations=("int8",)))

Everything is converted and checked in memory first; files are written only at the end
(atomically), so a failed or --strict-rejected conversion leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lungcnn.convert.representative import CalibrationSet, calibration_from_folder, calibration_from_run
from lungcnn.convert.errors import ConvertError, ParityError
from lungcnn.convert.parity import (
    PARITY_SPLITS,
    EvalSplit,
    load_eval_splits,
    parity_report,
    tensor_details,
    tensor_summary,
    tflite_probabilities,
)
from lungcnn.convert.quantize import (
    DEFAULT_INT8_IO,
    IO_TYPES,
    QUANTIZATIONS,
    ConverterSettings,
    build_tflite,
    settings_for,
)
from lungcnn.edge.contract import first_line
from lungcnn.edge.manifest import (
    ManifestError,
    base_manifest,
    library_versions,
    manifest_path,
    read_manifest,
    sha256_file,
    write_bytes_atomic,
    write_json_atomic,
)
from lungcnn.edge.runtime import ModelError, interpreter_class
from lungcnn.trainer.architectures import with_features_output

# What the TFLite manifest copies from the run manifest, so readers never retype it.
TRAINING_KEYS = ("arch", "config", "seed", "split", "model_sha256", "data_dir", "datasets",
                 "data_summary", "versions")


@dataclass(frozen=True)
class ConvertOptions:
    """One `lungcnn convert` call, saved in every manifest it writes."""

    quantizations: tuple[str, ...] = QUANTIZATIONS
    io: str | None = None  # the int8 variant's input/output type; None -> uint8
    calibration_dir: Path | None = None  # None -> the run's training split
    data_dir: Path | None = None  # None -> the run manifest's data_dir
    out: Path | None = None  # only with a single quantization
    strict: bool = False
    min_agreement: float = 0.98


@dataclass(frozen=True)
class Conversion:
    """One converted variant, as written (or about to be)."""

    settings: ConverterSettings
    tflite_path: Path
    model_content: bytes
    manifest: dict
    probabilities: dict[str, np.ndarray]  # TFLite probabilities per parity split

    @property
    def manifest_path(self) -> Path:
        return self.tflite_path.with_suffix(".json")


@dataclass(frozen=True)
class _Source:
    path: Path
    model: object
    export_model: object  # the model with its features output, when it has one
    run_manifest: dict
    size: int
    data_dir: Path


def output_path(model_path: Path, quantization: str, out: Path | None = None) -> Path:
    """`--out`, else `model_<quantization>.tflite` beside the Keras model."""
    return Path(out) if out else Path(model_path).parent / f"model_{quantization}.tflite"


def convert_keras_run(
    model_path: str | Path, options: ConvertOptions = ConvertOptions()
) -> list[Conversion]:
    """Convert, check parity, then write every requested variant. Raises ConvertError."""
    model_path = Path(model_path)
    _check_options(options)
    targets = {q: output_path(model_path, q, options.out) for q in options.quantizations}
    for target in targets.values():
        _check_writable(target)
    source = _load_source(model_path, options.data_dir)
    splits = load_eval_splits(source.run_manifest, source.data_dir, source.size, source.model)
    calibration = _calibration(source, options) if "int8" in options.quantizations else None
    conversions = [
        _convert(
            source,
            settings_for(q, _io_for(q, options.io)),
            targets[q],
            calibration,
            splits,
            options,
        )
        for q in options.quantizations
    ]
    if options.strict:
        _check_agreement(conversions, options.min_agreement)
    for conversion in conversions:
        _write(conversion)
    return conversions


def _check_options(options: ConvertOptions) -> None:
    unknown = [q for q in options.quantizations if q not in QUANTIZATIONS]
    if unknown or not options.quantizations:
        raise ConvertError(
            f"unknown quantization {unknown[0] if unknown else '(none)'!r} "
            f"(choose from {', '.join(QUANTIZATIONS)}, all)"
        )
    if options.io is not None and options.io not in IO_TYPES:
        raise ConvertError(f"unknown --io {options.io!r} (choose from {', '.join(IO_TYPES)})")
    if options.io not in (None, "float32") and "int8" not in options.quantizations:
        raise ConvertError(
            f"--io {options.io} needs --quantize int8 or all (float variants take float32 input)"
        )
    if options.out is not None and len(options.quantizations) != 1:
        raise ConvertError("--out names one file: use it with a single --quantize, not all")
    if options.out is not None and Path(options.out).suffix != ".tflite":
        raise ConvertError(f"--out {options.out}: the file name must end in .tflite")
    if not 0.0 <= options.min_agreement <= 1.0:
        raise ConvertError(f"--min-agreement {options.min_agreement} is not between 0 and 1")


def _io_for(quantization: str, requested: str | None) -> str:
    if quantization == "int8":
        return requested or DEFAULT_INT8_IO
    return "float32"


def _check_writable(target: Path) -> None:
    folder = target.parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if target.is_dir():
        raise ConvertError(f"output {target}: is a directory")
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConvertError(f"output {target}: folder {folder} is not writable")


def _load_source(model_path: Path, data_dir: Path | None) -> _Source:
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
    return _Source(model_path, model, export_model, run_manifest, size, Path(folder))


def _check_run_manifest(model_path: Path, run_manifest: dict) -> None:
    where = manifest_path(model_path)
    split = run_manifest.get("split")
    if not isinstance(split, dict) or not split.get("train"):
        raise ConvertError(f"{where}: no split lists (split.train missing)")
    expected = run_manifest.get("model_sha256")
    if expected and expected != sha256_file(model_path):
        raise ConvertError(f"{model_path}: SHA-256 differs from model_sha256 in {where}")


def _load_keras(model_path: Path):
    keras = _import_tensorflow().keras
    try:
        return keras.models.load_model(model_path, compile=False)
    except Exception as error:  # Keras raises many types for a bad archive
        raise ConvertError(
            f"{model_path}: not a loadable Keras model ({first_line(error)})"
        ) from None


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


def _calibration(source: _Source, options: ConvertOptions) -> CalibrationSet:
    if options.calibration_dir is None:
        return calibration_from_run(source.run_manifest, source.data_dir, source.size)
    held_out = {
        (source.data_dir / rel).resolve()
        for name in PARITY_SPLITS
        for rel in source.run_manifest["split"].get(name) or []
    }
    return calibration_from_folder(
        Path(options.calibration_dir), source.size, source.run_manifest["class_names"], held_out
    )


def _convert(
    source: _Source,
    settings: ConverterSettings,
    target: Path,
    calibration: CalibrationSet | None,
    splits: dict[str, EvalSplit],
    options: ConvertOptions,
) -> Conversion:
    images = calibration.images if settings.needs_calibration else None
    try:
        content = build_tflite(source.export_model, settings, images)
    except Exception as error:  # the converter's own errors are long MLIR dumps
        raise ConvertError(
            f"{source.path}: {settings.quantization} conversion failed ({first_line(error)})"
        ) from None
    manifest = _tflite_manifest(source, settings, target, content, calibration, options)
    probabilities = _probabilities_on_device(target.name, content, manifest, splits)
    manifest["parity"] = {
        "runtime": _runtime_name(),
        "data_dir": str(source.data_dir),
        "min_agreement": options.min_agreement,
        **parity_report(splits, probabilities),
    }
    return Conversion(settings, target, content, manifest, probabilities)


def _probabilities_on_device(
    name: str, content: bytes, manifest: dict, splits: dict[str, EvalSplit]
) -> dict[str, np.ndarray]:
    """Run the candidate through edge.runtime from a scratch folder: nothing is written
    under the final name before every check has passed."""
    with tempfile.TemporaryDirectory(prefix="lungcnn-convert-") as scratch:
        candidate = Path(scratch) / name
        candidate.write_bytes(content)
        write_json_atomic(candidate.with_suffix(".json"), manifest)
        try:
            return {
                key: tflite_probabilities(candidate, split.images) for key, split in splits.items()
            }
        except ModelError as error:
            raise ConvertError(
                f"converted {manifest['quantization']} model does not load: {error}"
            ) from None


def _tflite_manifest(
    source: _Source,
    settings: ConverterSettings,
    target: Path,
    content: bytes,
    calibration: CalibrationSet | None,
    options: ConvertOptions,
) -> dict:
    run = source.run_manifest
    input_detail, output_detail, features_detail = tensor_details(
        content, len(run["class_names"]), target.name
    )
    manifest = base_manifest(target, size=source.size, kind="tflite")
    manifest["class_names"] = list(run["class_names"])
    manifest["input"].update(tensor_summary(input_detail))
    manifest.update(
        {
            "quantization": settings.quantization,
            "io": settings.io,
            "output": tensor_summary(output_detail),
            "tflite_sha256": hashlib.sha256(content).hexdigest(),
            "source_model": {
                "path": os.path.relpath(source.path.resolve(), target.parent.resolve()),
                "sha256": sha256_file(source.path),
                "bytes": source.path.stat().st_size,
            },
            "converter": {**settings.to_json(), "options": asdict(options)},
            "versions": library_versions(),
            "calibration_set": calibration.description if settings.needs_calibration else None,
            "training": {key: run[key] for key in TRAINING_KEYS if key in run},
        }
    )
    if features_detail is not None:
        manifest["features_output"] = {"dim": int(features_detail["shape"][-1]),
                                       **tensor_summary(features_detail)}
    # No "calibration"/"trust" sections: `lungcnn calibrate` fits them on each variant's own
    # predictions; a copy of the Keras model's would be wrong for int8.
    return manifest


def _runtime_name() -> str:
    package = interpreter_class().__module__.split(".")[0]
    distribution = package.replace("_", "-")  # ai_edge_litert -> ai-edge-litert
    return f"{package} {library_versions().get(distribution, 'unknown')}"


def _check_agreement(conversions: list[Conversion], min_agreement: float) -> None:
    for conversion in conversions:
        val = conversion.manifest["parity"].get("val")
        if val is None:
            raise ConvertError("--strict needs validation images, and the run has none readable")
        if val["agreement"] < min_agreement:
            raise ParityError(
                f"{conversion.settings.quantization}: validation top-1 agreement with Keras "
                f"{val['agreement']:.3f} < --min-agreement {min_agreement}; nothing written"
            )


def _write(conversion: Conversion) -> None:
    """The old manifest goes first: if we are killed before the new one lands, the new model
    has no manifest (readers refuse it) rather than someone else's."""
    try:
        conversion.manifest_path.unlink(missing_ok=True)
        write_bytes_atomic(conversion.tflite_path, conversion.model_content)
        write_json_atomic(conversion.manifest_path, conversion.manifest)
    except OSError as error:
        raise ConvertError(
            f"cannot write {conversion.tflite_path}: {error.strerror or error}"
        ) from None
