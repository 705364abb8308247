"""`edge-classify`: classify chest X-ray scans on a device with a TFLite model, without
TensorFlow. Not a medical device."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from lungcnn.edge.api import BUNDLED_MODEL, Classifier
from lungcnn.edge.contract import ScanError, first_line, read_grayscale
from lungcnn.edge.heatmap import DEFAULT_GRID, heatmap_path
from lungcnn.edge.inputs import InputItem, expand_inputs
from lungcnn.edge.report import NOTICE, WRITERS, Progress, ScanResult, display_name
from lungcnn.edge.runtime import ModelError
from lungcnn.edge.trust import file_colourfulness

PROG = "edge-classify"
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2

HELP = f"""Classify chest X-ray scans as Covid, Normal or Viral Pneumonia.

SCAN is a file (PNG, JPEG, BMP, TIFF, WebP or DICOM, recognised by content), a folder (searched recursively for image extensions and extension-less DICOM files) or a glob pattern such as 'scans/**/*.png'.

Exit codes: 0 every scan classified; 1 some scans failed (one line each on stderr); 2 usage or model error.

`edge-classify serve --help`: the web page and HTTP API (a scan file named serve is passed as ./serve).

{NOTICE}
"""

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command(help=HELP)
def classify(
    scans: Annotated[
        list[str],
        typer.Argument(
            metavar="SCAN", help="Files, folders or glob patterns.", show_default=False
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            help="A .tflite model; its manifest (same name, .json) gives labels and input size.",
            show_default="the bundled edge/models/lungcnn_int8.tflite",
        ),
    ] = None,
    json_lines: Annotated[
        bool, typer.Option("--json", help="One JSON object per scan per line.")
    ] = False,
    csv_rows: Annotated[bool, typer.Option("--csv", help="CSV with a header row.")] = False,
    threads: Annotated[
        int | None,
        typer.Option(min=1, help="Interpreter threads.", show_default="the runtime's choice"),
    ] = None,
    heatmap_dir: Annotated[
        Path | None,
        typer.Option(
            "--heatmap",
            metavar="OUT_DIR",
            help="Also write OUT_DIR/<scan>.heatmap.png: the scan with the regions the answer "
            "depends on in colour (occlusion sensitivity: "
            f"{DEFAULT_GRID * DEFAULT_GRID + 1} model runs per scan, about 0.1 s on one thread "
            "for the bundled model).",
            show_default=False,
        ),
    ] = None,
) -> None:
    if json_lines and csv_rows:
        _fail("--json and --csv cannot be combined")
    if heatmap_dir is not None and heatmap_dir.exists() and not heatmap_dir.is_dir():
        _fail(f"--heatmap {heatmap_dir}: not a folder")
    classifier = _load_classifier(model, threads)
    items = expand_inputs(scans)
    writer_type = WRITERS["json" if json_lines else "csv" if csv_rows else "table"]
    writer = writer_type(sys.stdout, classifier.class_names, [display_name(i.path) for i in items])
    progress = Progress(sys.stderr, len(items))
    failed = 0
    heatmap_names: set[str] = set()
    for done, item in enumerate(items, start=1):
        result, gray = classify_item(classifier, item)
        heatmap_error = None
        if gray is not None and heatmap_dir is not None:
            heatmap_error = _write_heatmap(classifier, item.path, gray, heatmap_dir,
                                           heatmap_names)
        progress.clear()
        if not result.ok:
            failed += 1
            _print_error(f"{result.file}: {result.error}")
        if heatmap_error:
            failed += 1
            _print_error(f"{result.file}: heatmap not written ({heatmap_error})")
        writer.write(result)
        progress.update(done)
    progress.clear()
    writer.finish(len(items) - failed, failed)
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)


def classify_item(
    classifier: Classifier, item: InputItem
) -> tuple[ScanResult, np.ndarray | None]:
    """Classify one file; any problem becomes the result's one-line error. Also returns the
    decoded scan (None on error) so a heatmap does not decode the file again."""
    if item.error is not None:
        return ScanResult(item.path, error=item.error), None
    try:
        gray = read_grayscale(item.path)
    except ScanError as error:
        return ScanResult(item.path, error=str(error)), None
    return classifier.classify_gray(gray, item.path, file_colourfulness(item.path)), gray


def _write_heatmap(
    classifier: Classifier, path: Path, gray: np.ndarray, out_dir: Path, taken: set[str]
) -> str | None:
    """Write the scan's heatmap PNG; the reason it could not be written, else None."""
    try:
        classifier.heatmap(gray, heatmap_path(path, out_dir, taken), name=path)
    except (ScanError, OSError) as error:
        return first_line(error)
    return None


def _load_classifier(model: Path | None, threads: int | None) -> Classifier:
    if model is None and not BUNDLED_MODEL.exists():
        _fail(f"no bundled model at {BUNDLED_MODEL}; pass --model FILE.tflite")
    try:
        return Classifier(model or BUNDLED_MODEL, threads=threads)
    except ModelError as error:
        _fail(str(error))


def _fail(message: str):
    _print_error(message)
    raise typer.Exit(EXIT_USAGE)


def _print_error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["serve"]:
        from lungcnn.edge.serve.cli import main as serve_main

        return serve_main(args[1:])
    try:
        app(args=argv, prog_name=PROG)
    except KeyboardInterrupt:
        _print_error("interrupted")
        sys.exit(130)
