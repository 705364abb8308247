"""`lungcnn calibrate RUN_DIR`: calibrated confidence and abstention thresholds for a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lungcnn.calibrate.calibration import calibrate_run
from lungcnn.calibrate.source_rule import apply_rule, read_rule
from lungcnn.edge.decode import ScanError
from lungcnn.edge.errors import EXIT_OK, EXIT_USAGE, fail  # noqa: F401 - EXIT_OK too
from lungcnn.edge.manifest import ManifestError
from lungcnn.trainer.tf_log import quiet_tensorflow

EXIT_ERROR = EXIT_USAGE  # unusable run, model or data


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
    Not a medical device (lungcnn.edge.errors.NOTICE)."""
    quiet_tensorflow()
    try:
        rule = read_rule(loso) if loso is not None else None
        written = calibrate_run(run_dir, data_dir, echo=typer.echo)
        models = [p.with_suffix(".tflite") for p in written if rule]
        for model_path in (m for m in models if m.is_file()):
            trust = apply_rule(model_path, rule)
            threshold = (trust.get("feature_distance") or {}).get("threshold")
            limit = "none" if threshold is None else f"{threshold:.2f}"
            sets = trust.get("prediction_set")
            kept = (f"labels with calibrated probability >= {sets['min_probability']:.3f}"
                    if sets else "none")
            typer.echo(f"{model_path.name}: held-out-source rule applied (it replaces the "
                       f"validation limits above in the manifest): min confidence "
                       f"{trust['min_confidence']:.3f}, feature distance <= {limit}, "
                       f"prediction set: {kept}")
    except (ManifestError, ScanError, KeyError, ValueError, OSError) as error:
        fail(f"{run_dir}: {error}", EXIT_ERROR, prog="lungcnn calibrate")
