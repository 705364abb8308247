"""`lungcnn convert` / `python -m lungcnn.convert`: Keras run -> TFLite variants with manifests."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from lungcnn.convert.converter import Conversion, ConvertOptions, convert_keras_run
from lungcnn.convert.errors import ConvertError
from lungcnn.convert.quantize import IO_TYPES, QUANTIZATIONS
from lungcnn.edge.errors import NOTICE, fail
from lungcnn.trainer.tf_log import quiet_tensorflow

Quantize = Enum("Quantize", {name: name for name in (*QUANTIZATIONS, "all")}, type=str)
IoType = Enum("IoType", {name: name for name in IO_TYPES}, type=str)


def convert_command(
    model: Annotated[
        Path, typer.Argument(help="RUN_DIR/model.keras of a trainer run (manifest.json beside it).")
    ],
    quantize: Annotated[
        Quantize,
        typer.Option(
            "--quantize",
            help="float32; float16 (float16 weights); dynamic (dynamic-range int8 weights); "
            "int8 (full-integer, calibrated on the training split); all (every variant).",
        ),
    ],
    io: Annotated[
        IoType | None,
        typer.Option(
            "--io",
            help="int8 model's input/output type (default uint8: the device feeds raw 0-255 "
            "pixels). Float variants always take float32.",
        ),
    ] = None,
    representative: Annotated[
        Path | None,
        typer.Option(
            "--representative",
            "--calibration",
            metavar="DIR",
            help="int8 representative images (that set the quantization ranges) instead of "
            "the run's training split: a folder of class subfolders or a flat folder of images "
            "(no validation/test files). --calibration is its former name.",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Dataset root holding the run's split files (default: the run's data_dir).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output .tflite for a single variant (manifest .json beside it) "
            "(default: RUN_DIR/model_<quant>.tflite).",
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Fail and write nothing if validation agreement < --min-agreement."
        ),
    ] = False,
    min_agreement: Annotated[
        float,
        typer.Option(
            "--min-agreement",
            help="Top-1 agreement with Keras on validation that --strict requires.",
        ),
    ] = 0.98,
) -> None:
    """Convert a trained Keras model to TFLite, with a manifest and a parity report against
    Keras (validation and test splits of the run) beside each file.

    Exit codes:
    0 converted;
    1 --strict and validation agreement below --min-agreement (nothing written);
    2 usage or input error: missing or non-Keras model, no run manifest, unknown quantization,
    bad representative folder, missing dataset, unwritable output, TensorFlow not installed.
    """
    quiet_tensorflow()
    options = ConvertOptions(
        quantizations=QUANTIZATIONS if quantize.value == "all" else (quantize.value,),
        io=io.value if io else None,
        representative_dir=representative,
        data_dir=data,
        out=out,
        strict=strict,
        min_agreement=min_agreement,
    )
    try:
        conversions = convert_keras_run(model, options)
    except ConvertError as error:
        fail(str(error), error.exit_code)
    _report(conversions, min_agreement)


def _report(conversions: list[Conversion], min_agreement: float) -> None:
    for line in _skipped_lines(conversions):
        typer.echo(f"warning: skipped {line}", err=True)
    for conversion in conversions:
        typer.echo(f"wrote {conversion.tflite_path} and {conversion.manifest_path.name}")
        val = conversion.manifest["parity"].get("val")
        if val and val["agreement"] < min_agreement:
            typer.echo(
                f"warning: {conversion.settings.quantization}: validation agreement "
                f"{val['agreement']:.3f} < {min_agreement}",
                err=True,
            )
    typer.echo(summary_table(conversions))
    typer.echo(f"Accuracy on a small public dataset. {NOTICE}")


def _skipped_lines(conversions: list[Conversion]) -> list[str]:
    manifest = conversions[0].manifest
    lines = [
        line
        for split in manifest["parity"].values()
        if isinstance(split, dict)
        for line in split.get("skipped", [])
    ]
    representative = next(
        (c.manifest["representative_set"] for c in conversions if c.manifest["representative_set"]),
        None,
    )
    return lines + (representative["skipped"] if representative else [])


def summary_table(conversions: list[Conversion]) -> str:
    """Size, parity and test quality of Keras and each variant; test top-1 answers that
    differ from the float32 TFLite model's."""
    reference = next((c for c in conversions if c.settings.quantization == "float32"), None)
    header = (
        "variant",
        "io",
        "size KB",
        "% float32",
        "val agree",
        "test agree",
        "test acc",
        "test AUC",
        "test != float32",
    )
    rows = [header, _keras_row(conversions[0], reference)]
    rows += [_summary_row(c, reference) for c in conversions]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )


def _keras_row(conversion: Conversion, reference: Conversion | None) -> tuple[str, ...]:
    test = conversion.manifest["parity"].get("test", {})
    changed = (
        str(len(reference.manifest["parity"]["test"]["disagreements"]))
        if reference and test
        else "-"
    )
    return (
        "keras",
        "float32",
        f"{conversion.manifest['source_model']['bytes'] / 1024:.1f}",
        "-",
        "-",
        "-",
        _number(test.get("keras", {}).get("accuracy")),
        _number(test.get("keras", {}).get("auc_macro")),
        changed,
    )


def _summary_row(conversion: Conversion, reference: Conversion | None) -> tuple[str, ...]:
    parity = conversion.manifest["parity"]
    val, test = parity.get("val", {}), parity.get("test", {})
    size = len(conversion.model_content)
    share = f"{100 * size / len(reference.model_content):.1f}" if reference else "-"
    changed = "-"
    if reference and "test" in conversion.probabilities:
        test_top1 = conversion.probabilities["test"].argmax(axis=1)
        changed = str(int((test_top1 != reference.probabilities["test"].argmax(axis=1)).sum()))
    return (
        conversion.settings.quantization,
        conversion.settings.io,
        f"{size / 1024:.1f}",
        share,
        _number(val.get("agreement")),
        _number(test.get("agreement")),
        _number(test.get("tflite", {}).get("accuracy")),
        _number(test.get("tflite", {}).get("auc_macro")),
        changed,
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


app = typer.Typer(add_completion=False, help=f"Convert a Keras run to TFLite. {NOTICE}")
app.command()(convert_command)


def main() -> None:
    app()
