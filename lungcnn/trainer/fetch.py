"""`lungcnn data fetch DATASET --to DIR`: rebuild a dataset on this machine from its public
sources, from a provenance manifest committed in the project (trainer/provenance.py).

Each original is downloaded at its pinned commit into `<file>.part` next to its destination,
checked against `origin_sha256`, re-encoded by the dataset's build rules (trainer/reencode.py)
and only then moved into place (`os.replace`), so a failed or interrupted download never leaves
a file that looks complete. DIR/SHA256SUMS is appended after every file, so a new run skips
the files already present and verified. At the end (also when interrupted) DIR/manifest.csv
lists the images present, with the checksums and sizes of the files actually written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Callable

import typer

from lungcnn.edge.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail
from lungcnn.trainer.download import DownloadError, DownloadPolicy, download
from lungcnn.trainer.provenance import (
    SUMS_NAME,
    Entry,
    FetchableDataset,
    ManifestError,
    append_sum,
    file_sha256,
    load_dataset,
    origin_url,
    read_sums,
    write_copy,
)
from lungcnn.trainer.reencode import EncodeError, lung_mask, pixel_sha256, reencode

DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
# The fetchable datasets of a source checkout: data/<name>/manifest.csv.
DATA_ROOT = Path(__file__).resolve().parents[2] / "data"
EXIT_COMPLETE, EXIT_SOME_FAILED = EXIT_OK, EXIT_FAILED


class FetchFailure(Exception):
    """One file that could not be fetched and verified (one-line reason)."""


@dataclass(frozen=True)
class FetchOptions:
    base_url: str = DEFAULT_BASE_URL
    sources: tuple[str, ...] = ()  # empty: every source
    limit: int | None = None  # first N images (after `sources`), with their masks
    policy: DownloadPolicy = DownloadPolicy()


@dataclass
class FetchReport:
    fetched: int = 0
    present: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    listed: int = 0  # images in DIR/manifest.csv at the end
    differing: list[str] = field(default_factory=list)  # files in DIR unlike the curated bytes


def fetch_command(
    dataset: Annotated[
        str,
        typer.Argument(
            metavar="DATASET",
            help="A dataset of this checkout's data/ folder (multisource), or a folder holding "
            "a provenance manifest.csv (and masks.csv).",
        ),
    ],
    to: Annotated[Path, typer.Option("--to", metavar="DIR", help="Folder to build the set in.")],
    source: Annotated[
        list[str] | None,
        typer.Option("--source", metavar="S", help="Fetch only source S (repeatable)."),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Fetch only the first N images and their masks."),
    ] = None,
    base_url: Annotated[
        str,
        typer.Option(
            metavar="URL",
            help="Raw-file host or mirror: a file is read from "
            "URL/<origin_repo>/<origin_commit>/<origin_path>.",
        ),
    ] = DEFAULT_BASE_URL,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for a connection or for each read.")
    ] = DownloadPolicy.timeout,
    attempts: Annotated[
        int,
        typer.Option(min=1, max=10, help="Tries per file on network errors and HTTP 5xx/429."),
    ] = DownloadPolicy.attempts,
) -> None:
    """Download a dataset from its public sources at pinned commits and rebuild it in DIR.

    Every original is checked against its SHA-256 in the manifest, then resized and re-encoded
    by the dataset's build rules. Files already present and verified are skipped, so running
    the command again resumes an interrupted fetch. Progress goes to stderr. Read DIR/README.md
    for the licenses and the attribution they require.

    Exit codes:
    0 every selected file is present and verified;
    1 some files failed (each named on stderr with the reason; run again to retry);
    2 unknown dataset or source, unusable manifest, or DIR not a folder;
    130 interrupted (what was done is kept and listed in DIR/manifest.csv).
    """
    try:
        folder = resolve_dataset(dataset)
        loaded = load_dataset(folder)
        _check_destination(to, folder)
        policy = DownloadPolicy(timeout=timeout, attempts=attempts)
        options = FetchOptions(base_url, tuple(source or ()), limit, policy)
        entries = select_entries(loaded, options)
    except ManifestError as error:
        fail(str(error), EXIT_USAGE)
    try:
        report = fetch_dataset(loaded, entries, to, options)
    except OSError as error:  # DIR itself unwritable or full; per-file errors are in the report
        fail(f"{to}: {error}", EXIT_SOME_FAILED)
    typer.echo(format_report(report, len(entries), to))
    raise typer.Exit(EXIT_SOME_FAILED if report.failed else EXIT_COMPLETE)


def resolve_dataset(dataset: str) -> Path:
    """A dataset name of this checkout's data/ folder first, else a folder path."""
    named = DATA_ROOT / dataset
    if re.fullmatch(r"[A-Za-z0-9_-]+", dataset) and (named / "manifest.csv").is_file():
        return named
    if Path(dataset).is_dir():
        return Path(dataset)
    known = sorted(p.parent.name for p in DATA_ROOT.glob("*/manifest.csv"))
    raise ManifestError(
        f"unknown dataset {dataset!r}: expected one of {', '.join(known) or 'none'} "
        "(from a source checkout's data/ folder) or a folder with a provenance manifest.csv"
    )


def select_entries(dataset: FetchableDataset, options: FetchOptions) -> list[Entry]:
    """The images chosen by source and limit, each followed by its masks."""
    known = sorted({entry.source for entry in dataset.images})
    unknown = sorted(set(options.sources) - set(known))
    if unknown:
        raise ManifestError(
            f"unknown source {', '.join(unknown)}: the manifest has {', '.join(known)}"
        )
    images = [e for e in dataset.images if not options.sources or e.source in options.sources]
    masks: dict[str, list[Entry]] = {}
    for mask in dataset.masks:
        masks.setdefault(mask.image, []).append(mask)
    chosen = images[: options.limit]
    return [item for image in chosen for item in (image, *masks.get(image.file, ()))]


def fetch_dataset(
    dataset: FetchableDataset,
    entries: list[Entry],
    out_dir: Path,
    options: FetchOptions,
    progress: Callable[[str], None] = lambda line: typer.echo(line, err=True),
) -> FetchReport:
    """Fetch ENTRIES into OUT_DIR, then write its manifest, checksums and README."""
    sums_path = out_dir / SUMS_NAME
    recorded = read_sums(sums_path)
    report = FetchReport()
    width = len(str(len(entries)))
    try:
        for index, entry in enumerate(entries, 1):
            prefix = f"[{index:>{width}}/{len(entries)}] {entry.file}"
            try:
                status, digest = _fetch_entry(entry, out_dir, options, recorded)
            except FetchFailure as error:
                report.failed.append((entry.file, str(error)))
                progress(f"error: {entry.file}: {error}")
                continue
            if recorded.get(entry.file) != digest:
                append_sum(sums_path, digest, entry.file)
                recorded[entry.file] = digest
            if status == "present":
                report.present += 1
            else:
                report.fetched += 1
            progress(f"{prefix}: {status}")
    finally:
        report.listed, report.differing = write_outputs(dataset, out_dir, recorded)
    return report


def write_outputs(
    dataset: FetchableDataset, out_dir: Path, recorded: dict[str, str]
) -> tuple[int, list[str]]:
    """Describe the verified files present in OUT_DIR. Returns the number of images listed and
    the files whose bytes differ from the curated copy's."""
    present, differing = {}, []
    for entry in (*dataset.images, *dataset.masks):
        digest = _verified_digest(out_dir / entry.file, entry, recorded)
        if digest:
            present[entry.file] = digest
            if digest != entry.sha256:
                differing.append(entry.file)
    return write_copy(dataset, out_dir, present), differing


def format_report(report: FetchReport, selected: int, out_dir: Path) -> str:
    lines = [
        f"{selected} files selected: {report.fetched} fetched, {report.present} already present, "
        f"{len(report.failed)} failed.",
        f"{out_dir / 'manifest.csv'} lists {report.listed} images.",
    ]
    if report.differing:
        lines.append(
            f"warning: {len(report.differing)} files in {out_dir} differ byte-wise from the "
            "curated copy's sha256 (their originals were verified; encoder versions differ)."
        )
    if report.failed:
        lines.append("Run again to retry the failed files (named on stderr).")
    if (out_dir / "README.md").is_file():
        lines.append(f"Licenses and the attribution they require: {out_dir / 'README.md'}")
    return "\n".join(lines)


def _fetch_entry(entry: Entry, out_dir: Path, options: FetchOptions, recorded: dict[str, str]):
    """("present" | "fetched", sha256 of the stored file); raises FetchFailure."""
    dest = out_dir / entry.file
    digest = _verified_digest(dest, entry, recorded)
    if digest:
        return "present", digest
    dest.unlink(missing_ok=True)  # an unverified file must not stay looking complete
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        origin = download(origin_url(options.base_url, entry), part, options.policy)
        if entry.origin_sha256 and origin != entry.origin_sha256:
            raise FetchFailure(
                f"origin checksum mismatch (got {origin[:12]}..., manifest "
                f"{entry.origin_sha256[:12]}...); not kept"
            )
        original = part.read_bytes()
        stored = lung_mask(original, entry.lung_values) if entry.lung_values else reencode(original)
        _check_stored(entry, stored.data, stored.suffix, stored.sha256)
        with open(part, "wb") as out:
            out.write(stored.data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, dest)
    except (DownloadError, EncodeError) as error:
        raise FetchFailure(str(error)) from None
    except OSError as error:  # writing DIR/<file>
        raise FetchFailure(f"cannot write ({error})") from None
    finally:
        part.unlink(missing_ok=True)
    return "fetched", stored.sha256


def _check_stored(entry: Entry, data: bytes, suffix: str, digest: str) -> None:
    expected = PurePosixPath(entry.file).suffix
    if suffix != expected:
        raise FetchFailure(f"the original encodes as {suffix}, the manifest expects {expected}")
    if entry.origin_sha256 or digest == entry.sha256:
        return
    if pixel_sha256(data) != entry.pixel_sha256:  # no origin checksum: the pixels must match
        raise FetchFailure("pixels differ from the curated copy (pixel_sha256); not kept")


def _verified_digest(path: Path, entry: Entry, recorded: dict[str, str]) -> str:
    """The file's sha256 when it is present and verified (curated or recorded checksum)."""
    if not path.is_file():
        return ""
    digest = file_sha256(path)
    return digest if digest in (entry.sha256, recorded.get(entry.file)) else ""


def _check_destination(out_dir: Path, folder: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ManifestError(f"{out_dir}: not a folder")
    if out_dir.resolve() == folder.resolve():
        raise ManifestError(f"{out_dir}: is the provenance folder itself; choose another DIR")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ManifestError(f"{out_dir}: cannot create ({error.strerror})") from None

