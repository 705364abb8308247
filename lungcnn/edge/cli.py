"""`edge-classify`: classify chest X-ray scans on a device with a TFLite model, without
TensorFlow. Not a medical device."""

from __future__ import annotations

from lungcnn.edge.interrupt import ctrl_c_ends_startup

with ctrl_c_ends_startup("edge-classify"):
    import os
    import signal
    import sys
    import threading
    from contextlib import closing, contextmanager
    from dataclasses import replace
    from pathlib import Path
    from typing import Annotated

    import typer

    from lungcnn.edge.api import BUNDLED_MODEL, Classifier
    from lungcnn.edge.decode import DecodedScan, ScanError
    from lungcnn.edge.errors import (
        EXIT_FAILED,
        EXIT_INTERRUPTED,
        EXIT_OK,
        EXIT_USAGE,
        NOTICE,
        fail,
        first_line,
        print_error,
        run_app,
    )
    from lungcnn.edge.heatmap import DEFAULT_GRID, heatmap_path
    from lungcnn.edge.inputs import InputItem, expand_inputs
    from lungcnn.edge.report import WRITERS, Progress, ScanResult, display_name
    from lungcnn.edge.runtime import ModelError
    from lungcnn.edge.workers import (
        MAX_DEFAULT_WORKERS,
        MAX_THREADS,
        MAX_WORKERS,
        classify_in_order,
        default_workers,
    )

PROG = "edge-classify"

HELP = f"""Classify chest X-ray scans as Covid, Normal or Viral Pneumonia.

SCAN is a file (PNG, JPEG, BMP, TIFF, WebP or DICOM, recognised by content), a folder (searched recursively for image extensions and extension-less DICOM files) or a glob pattern such as 'scans/**/*.png'.

Exit codes: {EXIT_OK} every scan classified; {EXIT_FAILED} some scans failed (one line each on stderr, status "error" in JSON/CSV); {EXIT_USAGE} usage, model or output error (bad option, unusable model, stdout closed or full); {EXIT_INTERRUPTED} interrupted (Ctrl-C): every line already written is complete.

`edge-classify serve --help`: the web page and HTTP API (a scan file named serve is passed as ./serve). `edge-classify validate --help`, `edge-classify adapt --help`: check the model on a site's labelled scans, and fit it to them.

{NOTICE}
"""

# Plain help: paragraphs rewrapped to the terminal, no type tags, no Rich to import.
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


class OutputError(Exception):
    """The results cannot be written (stdout closed, full, or its reader gone)."""


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
            metavar="FILE",
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
        typer.Option(min=1, max=MAX_THREADS, metavar="N", help="Interpreter threads per worker.",
                     show_default="the runtime's choice"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_WORKERS, metavar="N",
                     help="Scans classified at once, each by its own copy of the model "
                     "(the answers do not change; the decode memory budget is shared).",
                     show_default=f"the CPUs available, at most {MAX_DEFAULT_WORKERS}"),
    ] = None,
    heatmap_dir: Annotated[
        Path | None,
        typer.Option(
            "--heatmap",
            metavar="OUT_DIR",
            help="Also write OUT_DIR/<scan>.heatmap.png: the scan with the regions the answer "
            "depends on in colour (occlusion sensitivity: "
            f"{DEFAULT_GRID * DEFAULT_GRID + 1} model runs per scan). A scan whose heatmap "
            "cannot be written counts as failed.",
            show_default=False,
        ),
    ] = None,
) -> None:
    if json_lines and csv_rows:
        fail("--json and --csv cannot be combined", EXIT_USAGE, PROG)
    output = "json" if json_lines else "csv" if csv_rows else "table"
    try:
        code = _classify(scans, model, output, threads, heatmap_dir,
                         workers or default_workers())
    except OutputError as error:
        _silence_stdout()
        fail(f"cannot write the results to stdout ({error})", EXIT_USAGE, PROG)
    except KeyboardInterrupt:  # before the batch, or a second Ctrl-C during it
        fail("interrupted", EXIT_INTERRUPTED, PROG)
    raise typer.Exit(code)


def _classify(scans: list[str], model: Path | None, output: str, threads: int | None,
              heatmap_dir: Path | None, workers: int) -> int:
    if sys.stdout is None:  # started with stdout closed (>&-)
        fail("stdout is closed: nowhere to write the results", EXIT_USAGE, PROG)
    if heatmap_dir is not None:
        _prepare_heatmap_dir(heatmap_dir)
    classifier = _load_classifier(model, threads)
    items = expand_inputs(scans)
    with _output():
        writer = WRITERS[output](sys.stdout, classifier.class_names,
                                 [display_name(i.path) for i in items])
    return _classify_items(classifier, items, writer, heatmap_dir, workers)


def _classify_items(classifier: Classifier, items: list[InputItem], writer,
                    heatmap_dir: Path | None, workers: int) -> int:
    """Classify the items (`workers` at a time) and write each result in the items' order;
    one bad scan does not stop the batch."""
    progress = Progress(sys.stderr, len(items))
    written = failed = 0
    taken: set[str] = set()
    jobs = ((item, None if heatmap_dir is None else heatmap_path(item.path, heatmap_dir, taken))
            for item in items)  # heatmap names are given in order, whatever finishes first
    results = classify_in_order(classifier, _classify_job, jobs, min(workers, len(items)))
    with _CtrlC() as ctrl_c, closing(results):
        for result in results:
            progress.clear()
            with _output():
                if not result.ok:
                    print_error(f"{result.file}: {result.error}", PROG)
                writer.write(result)
            written, failed = written + 1, failed + (not result.ok)
            progress.update(written)
            if ctrl_c.pressed:
                break
    progress.clear()
    with _output():
        writer.finish(written - failed, failed, len(items) - written)
    if written < len(items):
        print_error(f"interrupted after {written} of {len(items)} scans; the results "
                    "written are complete", PROG)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed else EXIT_OK


def _classify_job(classifier: Classifier, job: tuple[InputItem, Path | None]) -> ScanResult:
    return classify_item(classifier, *job)


class _CtrlC:
    """The first Ctrl-C stops the batch after the scan in progress, so no record is cut; a
    second one stops at once (KeyboardInterrupt)."""

    def __init__(self):
        self.pressed = False
        self._previous = None

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._press)
        return self

    def _press(self, signum, frame) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True

    def __exit__(self, *exc_info) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def classify_item(classifier: Classifier, item: InputItem,
                  heatmap: Path | None = None) -> ScanResult:
    """Classify one file (decoded once) and write its heatmap to `heatmap` if given; any
    problem becomes the result's one-line error, so record, footer and exit code agree."""
    if item.error is not None:
        return ScanResult(item.path, error=item.error)
    try:
        scan = classifier.decode(item.path)
    except ScanError as error:
        return ScanResult(item.path, error=str(error))
    result = classifier.classify_gray(scan.gray, item.path, scan.colourfulness)
    if heatmap is not None:
        problem = _write_heatmap(classifier, item.path, scan, heatmap)
        if problem is not None:
            result = replace(result, error=f"heatmap not written ({problem})")
    return result


def _write_heatmap(classifier: Classifier, path: Path, scan: DecodedScan,
                   target: Path) -> str | None:
    """Write the scan's heatmap PNG; the reason it could not be written, else None."""
    try:
        # The caption names the scan as printed (a name that is not valid UTF-8 cannot be
        # stored in a PNG text chunk); the file keeps the scan's own name.
        classifier.heatmap(scan.gray, target, name=Path(display_name(path)))
    except OSError as error:
        return f"{display_name(target)}: {error.strerror or first_line(error)}"
    except (ScanError, ValueError) as error:
        return first_line(error)
    return None


def _prepare_heatmap_dir(heatmap_dir: Path) -> None:
    try:
        heatmap_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        fail(f"--heatmap {heatmap_dir}: not a folder", EXIT_USAGE, PROG)
    except OSError as error:
        fail(f"--heatmap {heatmap_dir}: cannot create the folder ({first_line(error)})",
             EXIT_USAGE, PROG)


def _load_classifier(model: Path | None, threads: int | None) -> Classifier:
    if model is None and not BUNDLED_MODEL.exists():
        fail(f"no bundled model at {BUNDLED_MODEL}; pass --model FILE.tflite", EXIT_USAGE, PROG)
    try:
        return Classifier(model or BUNDLED_MODEL, threads=threads)
    except ModelError as error:
        fail(str(error), EXIT_USAGE, PROG)


@contextmanager
def _output():
    """A failure to write the results becomes an OutputError."""
    try:
        yield
    except OSError as error:
        raise OutputError(error.strerror or first_line(error)) from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of a broken stdout does
    not print a traceback after our one-line error."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (AttributeError, OSError, ValueError):
        pass


def _occupy_closed_standard_fds() -> None:
    """Started with stdin, stdout or stderr closed, the next file opened would take its
    number, and native libraries' log lines could land in a heatmap being written: point it
    at /dev/null. A closed stdout is still reported (sys.stdout stays None); a closed stderr
    loses the error lines, the exit code still tells."""
    for descriptor in (0, 1, 2):
        try:
            os.fstat(descriptor)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != descriptor:
                os.dup2(null, descriptor)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the whole process


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["serve"]:
        from lungcnn.edge.serve.cli import main as serve_main

        return serve_main(args[1:])
    if args[:1] in (["validate"], ["adapt"]):
        from lungcnn.edge.site_cli import main as site_main  # not needed to classify
        return site_main(args)
    _occupy_closed_standard_fds()
    for stream in (sys.stdout, sys.stderr):  # a name the terminal cannot encode is escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    run_app(app, args, PROG)
