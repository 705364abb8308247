"""A run's models made ready to benchmark: model.keras and every TFLite variant beside it,
converted (`lungcnn convert`) and calibrated (`lungcnn calibrate`) when missing."""

from __future__ import annotations

from pathlib import Path

from lungcnn.benchmarks.errors import BenchError
from lungcnn.benchmarks.runtimes import KERAS, LITERT, runtime_of
from lungcnn.convert.quantize import QUANTIZATIONS
from lungcnn.edge.errors import first_line
from lungcnn.edge.manifest import read_manifest


def ensure_variants(keras_path: Path, data_dir: Path | None, log) -> dict[str, Path]:
    """model.keras and every model_<quant>.tflite beside it, converting the missing ones."""
    from lungcnn.convert.converter import ConvertOptions, convert_keras_run, output_path
    from lungcnn.convert.errors import ConvertError

    targets = {q: output_path(keras_path, q) for q in QUANTIZATIONS}
    missing = tuple(q for q, path in targets.items() if not path.is_file())
    if missing:
        log(f"{keras_path.parent.name}: converting {', '.join(missing)}")
        try:
            convert_keras_run(keras_path, ConvertOptions(quantizations=missing, data_dir=data_dir))
        except ConvertError as error:
            raise BenchError(str(error)) from None
    return {KERAS: keras_path, **targets}


def ensure_calibrated(run_dir: Path, variants: dict[str, Path], data_dir: Path | None,
                      log) -> None:
    """Calibrate the run (`lungcnn calibrate`: train/validation only, every manifest of the
    run) when a TFLite variant's manifest has no trust thresholds."""
    from lungcnn.calibrate.calibration import calibrate_run

    missing = [variant for variant, path in variants.items() if runtime_of(path) == LITERT
               and not {"calibration", "trust"} <= read_manifest(path).keys()]
    if not missing:
        return
    log(f"{run_dir.name}: calibrating ({', '.join(missing)} without trust thresholds)")
    try:
        calibrate_run(run_dir, data_dir, echo=lambda line: log(f"  {line}"))
    except (KeyError, ValueError, OSError) as error:  # ManifestError, ScanError are ValueErrors
        raise BenchError(f"{run_dir}: calibration failed ({first_line(error)})") from None
