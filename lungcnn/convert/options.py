"""The options of one `lungcnn convert` call, checked before anything is loaded, and where
each variant is written."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lungcnn.convert.errors import ConvertError
from lungcnn.convert.quantize import DEFAULT_INT8_IO, IO_TYPES, QUANTIZATIONS


@dataclass(frozen=True)
class ConvertOptions:
    """One `lungcnn convert` call, saved in every manifest it writes."""

    quantizations: tuple[str, ...] = QUANTIZATIONS
    io: str | None = None  # the int8 variant's input/output type; None -> uint8
    representative_dir: Path | None = None  # None -> the run's training split
    data_dir: Path | None = None  # None -> the run manifest's data_dir
    out: Path | None = None  # only with a single quantization
    strict: bool = False
    min_agreement: float = 0.98


def output_path(model_path: Path, quantization: str, out: Path | None = None) -> Path:
    """`--out`, else `model_<quantization>.tflite` beside the Keras model."""
    return Path(out) if out else Path(model_path).parent / f"model_{quantization}.tflite"


def check_options(options: ConvertOptions) -> None:
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


def io_for(quantization: str, requested: str | None) -> str:
    if quantization == "int8":
        return requested or DEFAULT_INT8_IO
    return "float32"


def check_writable(target: Path) -> None:
    folder = target.parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if target.is_dir():
        raise ConvertError(f"output {target}: is a directory")
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConvertError(f"output {target}: folder {folder} is not writable")
