"""What to classify: SOURCE arguments (folders, globs, files, or manifests of paths) as one
list of absolute paths, each once, with the reason for any that cannot even be tried.

Folders, globs and plain files are expanded exactly as `edge-classify` expands them
(`lungcnn.edge.inputs`). A `.csv` or `.parquet` SOURCE is a manifest: its `path` column lists
the scans, relative paths being relative to the manifest's folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lungcnn.edge.errors import first_line
from lungcnn.edge.inputs import expand_inputs

MANIFEST_SUFFIXES = (".csv", ".parquet")
PATH_COLUMN = "path"
NOT_UTF8 = "file name is not valid UTF-8"


class SourceError(ValueError):
    """A SOURCE that lists nothing or cannot be read (one line; a usage error)."""


@dataclass(frozen=True)
class Listing:
    """The scans to classify: `paths[i]` is absolute; `errors[i]` is why it cannot be read
    at all (None for every ordinary file); `duplicates` counts paths listed more than once."""

    paths: tuple[str, ...]
    errors: tuple[str | None, ...]
    duplicates: int


def list_sources(arguments: list[str]) -> Listing:
    """Every scan named by `arguments`, in order, each absolute path once. Raises
    SourceError for an argument that yields no file or a manifest that cannot be read."""
    paths: list[str] = []
    errors: list[str | None] = []
    seen: set[str] = set()
    duplicates = 0
    for argument in arguments:
        for path in _paths_of(argument):
            key, error = _key_of(path)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            paths.append(key)
            errors.append(error)
    return Listing(tuple(paths), tuple(errors), duplicates)


def is_manifest(argument: str) -> bool:
    return Path(argument).suffix.lower() in MANIFEST_SUFFIXES and Path(argument).is_file()


def _paths_of(argument: str) -> list[Path]:
    if is_manifest(argument):
        return read_manifest_paths(Path(argument))
    items = expand_inputs([argument])
    failed = [item for item in items if item.error is not None]
    if failed:
        raise SourceError(f"{argument}: {failed[0].error}")
    return [item.path for item in items]


def read_manifest_paths(manifest: Path) -> list[Path]:
    """The `path` column of a CSV or Parquet manifest, relative entries resolved against the
    manifest's folder. Raises SourceError (unreadable, no `path` column, a blank entry)."""
    try:
        table = _read_table(manifest)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise SourceError(f"{manifest}: unreadable manifest ({first_line(error)})") from None
    if PATH_COLUMN not in table.column_names:
        raise SourceError(f"{manifest}: no {PATH_COLUMN!r} column "
                          f"(columns: {', '.join(table.column_names) or 'none'})")
    entries = table.column(PATH_COLUMN).to_pylist()
    for row, entry in enumerate(entries, start=1):
        if not isinstance(entry, str) or not entry.strip():
            raise SourceError(f"{manifest}: row {row} has no path")
    return [manifest.parent / entry for entry in entries]


def _read_table(manifest: Path):
    if manifest.suffix.lower() == ".csv":
        from pyarrow import csv

        options = csv.ConvertOptions(column_types={PATH_COLUMN: "string"})
        return csv.read_csv(manifest, convert_options=options)
    from pyarrow import parquet

    return parquet.read_table(manifest)


def _key_of(path: Path) -> tuple[str, str | None]:
    """The absolute path as text, and NOT_UTF8 for a name that Parquet cannot hold (it is
    kept, with undecodable bytes shown as U+FFFD, so the row still says what happened)."""
    key = os.path.abspath(path)
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return key.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), NOT_UTF8
    return key, None
