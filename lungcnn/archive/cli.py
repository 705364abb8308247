"""`lungcnn classify-archive`: the Typer command. Ray and pyarrow are imported inside it, so
`lungcnn --help` stays fast and works without the `[scale]` extra."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from lungcnn.edge.errors import EXIT_USAGE, NOTICE, fail

PROG = "lungcnn classify-archive"
# Ray's single-machine mode (its default on macOS and Windows): the node's address and every
# server Ray starts are on 127.0.0.1. Ray reads it when it is imported, so it is set first.
LOOPBACK_ONLY_ENV = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

HELP = f"""Classify every scan of an archive on a Ray cluster (Ray Data), with the same model,
preprocessing and trust checks as edge-classify.

SOURCE is a folder (searched recursively like edge-classify), a glob such as
'archive/**/*.png', a file, or a manifest: a .csv or .parquet file whose 'path' column lists
the scans (relative paths are relative to the manifest's folder).

RESULTS gets parts/part-*.parquet (one row per scan: path, sha256 and the edge-classify --json
fields; probabilities is a struct with one field per class) and run.json (model hash, code
version, counts, failures). Running the same command again with the same --out resumes: scans
already there are skipped. The scans and RESULTS must be on storage every worker can reach;
the model and the code travel with the job. See docs/archive.md.

Exit codes: 0 every scan classified; 1 some scans failed (each has a row with its error);
2 usage, source, model or results-folder error, or Ray unreachable; 3 the final count check
failed (scans missing or duplicated; re-run to resume).

{NOTICE}
"""


def classify_archive_command(
    sources: Annotated[list[str], typer.Argument(
        metavar="SOURCE", help="Folders, globs, files or .csv/.parquet manifests of paths.",
        show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", metavar="RESULTS", help="Results folder (created; reused to resume).",
        show_default=False)],
    address: Annotated[str, typer.Option(
        help="'local' starts a private Ray on 127.0.0.1; 'auto' joins this machine's "
        "cluster; 'ray://HOST:10001' a remote one.")] = "local",
    model: Annotated[Optional[Path], typer.Option(
        "--model", "-m", help="A .tflite model with its manifest (same name, .json) beside it.",
        show_default="the bundled edge/models/lungcnn_int8.tflite")] = None,
    batch_size: Annotated[int, typer.Option(
        min=1, help="Scans per batch, and per Parquet block.")] = 64,
    workers: Annotated[Optional[int], typer.Option(
        min=1, help="Ray actors, one CPU each (also the CPUs of a 'local' Ray).",
        show_default="one per CPU of the cluster")] = None,
) -> None:
    if address == "local":
        keep_ray_on_loopback()
    try:
        from lungcnn.archive import job, output, run, sources as source_listing
    except ImportError as error:
        _fail(f"needs the [scale] extra (pip install 'lungcnn[scale]'): {error}")
    from lungcnn.edge.runtime import ModelError

    config = run.ArchiveConfig(tuple(sources), out, address, model, batch_size, workers)
    try:
        outcome = run.run_archive(config)
    except (ModelError, source_listing.SourceError, output.ResultsError,
            job.ClusterError) as error:
        _fail(str(error))
    print(f"{PROG}: {outcome.summary(out)}", flush=True)
    print(NOTICE, flush=True)
    raise typer.Exit(outcome.exit_code)


classify_archive_command.__doc__ = HELP


def keep_ray_on_loopback() -> None:
    """Make a Ray started by this process listen on 127.0.0.1 only (before Ray is imported)."""
    name, value = LOOPBACK_ONLY_ENV
    os.environ.setdefault(name, value)


def _fail(message: str):
    fail(message, EXIT_USAGE, PROG)
