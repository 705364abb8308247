"""Library API of the converter: a trainer run's model.keras -> .tflite variants, each with
its manifest and a parity report against the Keras model.

    from lungcnn.convert.converter import ConvertOptions, convert_keras_run
    conversions = convert_keras_run("runs/x/model.keras", ConvertOptions(quantizations=("int8",)))

Everything is converted and checked in memory first; files are written only at the end
(atomically), so a failed or --strict-rejected conversion leaves nothing half-written.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcnn.convert.errors import ConvertError, ParityError
from lungcnn.convert.options import ConvertOptions, check_options, check_writable, io_for, output_path
from lungcnn.convert.parity import (
    PARITY_SPLITS,
    EvalSplit,
    load_eval_splits,
    parity_report,
    tflite_probabilities,
)
from lungcnn.convert.quantize import ConverterSettings, build_tflite, settings_for
from lungcnn.convert.representative import (
    RepresentativeSet,
    representative_from_folder,
    representative_from_run,
)
from lungcnn.convert.source import KerasSource, load_source
from lungcnn.convert.tflite_manifest import runtime_name, tflite_manifest
from lungcnn.edge.errors import first_line
from lungcnn.edge.manifest import write_bytes_atomic, write_json_atomic
from lungcnn.edge.runtime import ModelError
from lungcnn.edge.segmenter import LungSegmenter
from lungcnn.trainer.keras_model import KerasModel

__all__ = ["Conversion", "ConvertOptions", "convert_keras_run", "output_path"]


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


def convert_keras_run(
    model_path: str | Path, options: ConvertOptions = ConvertOptions()
) -> list[Conversion]:
    """Convert, check parity, then write every requested variant. Raises ConvertError."""
    model_path = Path(model_path)
    check_options(options)
    targets = {q: output_path(model_path, q, options.out) for q in options.quantizations}
    for target in targets.values():
        check_writable(target)
    source = load_source(model_path, options.data_dir)
    splits = load_eval_splits(source.run_manifest, source.data_dir,
                              KerasModel(source.model, source.run_manifest["class_names"],
                                         source.size, source.preprocessor))
    representative = _representative(source, options) if "int8" in options.quantizations else None
    conversions = [
        _convert(
            source,
            settings_for(q, io_for(q, options.io)),
            targets[q],
            representative,
            splits,
            options,
        )
        for q in options.quantizations
    ]
    if options.strict:
        _check_agreement(conversions, options.min_agreement)
    for conversion in conversions:
        _write(conversion)
        if source.preprocessor.segmenter is not None:  # contract 2: it travels with the model
            source.preprocessor.segmenter.copy_to(conversion.tflite_path.parent)
    return conversions


def _representative(source: KerasSource, options: ConvertOptions) -> RepresentativeSet:
    if options.representative_dir is None:
        return representative_from_run(source.run_manifest, source.data_dir, source.preprocessor)
    held_out = {
        (source.data_dir / rel).resolve()
        for name in PARITY_SPLITS
        for rel in source.run_manifest["split"].get(name) or []
    }
    return representative_from_folder(
        Path(options.representative_dir), source.preprocessor, source.run_manifest["class_names"],
        held_out
    )


def _convert(
    source: KerasSource,
    settings: ConverterSettings,
    target: Path,
    representative: RepresentativeSet | None,
    splits: dict[str, EvalSplit],
    options: ConvertOptions,
) -> Conversion:
    images = representative.images if settings.needs_representative else None
    try:
        content = build_tflite(source.export_model, settings, images)
    except Exception as error:  # the converter's own errors are long MLIR dumps
        raise ConvertError(
            f"{source.path}: {settings.quantization} conversion failed ({first_line(error)})"
        ) from None
    manifest = tflite_manifest(source, settings, target, content, representative, options)
    probabilities = _probabilities_on_device(target.name, content, manifest, splits,
                                             source.preprocessor.segmenter)
    manifest["parity"] = {
        "runtime": runtime_name(),
        "data_dir": str(source.data_dir),
        "min_agreement": options.min_agreement,
        **parity_report(splits, probabilities),
    }
    return Conversion(settings, target, content, manifest, probabilities)


def _probabilities_on_device(
    name: str, content: bytes, manifest: dict, splits: dict[str, EvalSplit],
    segmenter: LungSegmenter | None = None,
) -> dict[str, np.ndarray]:
    """Run the candidate through edge.runtime from a scratch folder: nothing is written
    under the final name before every check has passed."""
    with tempfile.TemporaryDirectory(prefix="lungcnn-convert-") as scratch:
        candidate = Path(scratch) / name
        candidate.write_bytes(content)
        write_json_atomic(candidate.with_suffix(".json"), manifest)
        if segmenter is not None:  # contract 2 models load it from beside them
            segmenter.copy_to(candidate.parent)
        try:
            return {
                key: tflite_probabilities(candidate, split.images) for key, split in splits.items()
            }
        except ModelError as error:
            raise ConvertError(
                f"converted {manifest['quantization']} model does not load: {error}"
            ) from None


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
