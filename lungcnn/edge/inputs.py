"""Turn the SCAN arguments (files, folders, globs) into the list of files to classify."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from lungcnn.edge.contract import is_dicom_file, is_image_file

_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class InputItem:
    """A file to classify, or an argument that yielded nothing (`error` says why)."""

    path: Path
    error: str | None = None


def expand_inputs(arguments: list[str]) -> list[InputItem]:
    """Files named explicitly are kept whatever their name (decoded by content); folders are
    walked recursively for image extensions (plus extension-less DICOM files), skipping hidden
    entries; a pattern that is not an existing path is expanded as a glob (`**` recurses).
    Each file appears once, in argument order."""
    items: list[InputItem] = []
    seen: set[Path] = set()
    for argument in arguments:
        for item in _expand_argument(argument):
            # realpath, unlike Path.resolve on Python < 3.13, does not raise on a symlink loop:
            # such a file is reported when it is read, like any unreadable file.
            key = Path(os.path.realpath(item.path)) if item.error is None else None
            if key is not None and key in seen:
                continue
            if key is not None:
                seen.add(key)
            items.append(item)
    return items


def _expand_argument(argument: str) -> list[InputItem]:
    path = Path(argument)
    if path.is_dir():
        files = _image_files_under(path)
        return [InputItem(f) for f in files] or [InputItem(path, "no image files in folder")]
    if path.exists() or path.is_symlink() or not (_GLOB_CHARACTERS & set(argument)):
        return [InputItem(path)]  # a missing file is reported when it is read
    matches = sorted(glob.glob(argument, recursive=True))
    if not matches:
        return [InputItem(path, "no files match this pattern")]
    return [item for match in matches for item in _expand_argument_match(Path(match))]


def _expand_argument_match(path: Path) -> list[InputItem]:
    if path.is_dir():
        return [InputItem(f) for f in _image_files_under(path)]
    return [InputItem(path)]


def _image_files_under(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, directories, files in os.walk(folder):
        directories[:] = sorted(d for d in directories if not d.startswith("."))
        for name in sorted(files):
            candidate = Path(root) / name
            if name.startswith("."):
                continue
            if is_image_file(candidate) or (not candidate.suffix and is_dicom_file(candidate)):
                found.append(candidate)
    return found
