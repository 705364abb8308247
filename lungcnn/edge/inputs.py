"""Turn the SCAN arguments (files, folders, globs) into the list of files to classify.

Listing never opens anything but folders and extension-less regular files (to look for a
DICOM header), so a FIFO or a device in a folder cannot block it; a folder that cannot be
listed, or a link to a folder, is reported as a failed input, never skipped silently."""

from __future__ import annotations

import glob
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from lungcnn.edge.decode import is_dicom_file, is_image_file, os_error_reason

_GLOB_CHARACTERS = frozenset("*?[")
NOT_FOLLOWED = "a symbolic link to a folder, not followed (pass the folder itself)"


@dataclass(frozen=True)
class InputItem:
    """A file to classify, or an input that yielded nothing (`error` says why)."""

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
    info, missing = _stat(path)
    if info is not None and stat.S_ISDIR(info.st_mode):
        return folder_items(path) or [InputItem(path, "no image files in folder")]
    if not missing or os.path.islink(path) or not (_GLOB_CHARACTERS & set(argument)):
        return [InputItem(path)]  # a missing or unreadable file is reported when it is read
    matches = sorted(glob.glob(argument, recursive=True))
    if not matches:
        return [InputItem(path, "no files match this pattern")]
    return [item for match in matches for item in _expand_match(Path(match))]


def _expand_match(path: Path) -> list[InputItem]:
    info, _ = _stat(path)
    if info is not None and stat.S_ISDIR(info.st_mode):
        return folder_items(path)
    return [InputItem(path)]


def _stat(path: Path) -> tuple[os.stat_result | None, bool]:
    """(stat of `path` following links or None, True when it does not exist)."""
    try:
        return os.stat(path), False
    except FileNotFoundError:
        return None, True
    except (OSError, ValueError):  # too long a name, a loop, no permission: not "missing"
        return None, False


def folder_items(folder: Path) -> list[InputItem]:
    """The scans under `folder`, depth first in name order, plus one failed item per folder
    that could not be listed and per link to a folder (a loop or a link to / must not make
    a run walk the whole disk)."""
    items: list[InputItem] = []
    pending = [folder]
    while pending:  # a stack, not recursion: a deep tree cannot exhaust Python's stack
        current = pending.pop()
        try:
            with os.scandir(current) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            items.append(InputItem(current, f"cannot list folder: {os_error_reason(error)}"))
            continue
        folders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if _is_folder(entry):
                if entry.is_symlink():
                    items.append(InputItem(Path(entry.path), NOT_FOLLOWED))
                else:
                    folders.append(Path(entry.path))
            elif _is_scan(entry):
                items.append(InputItem(Path(entry.path)))
        pending.extend(reversed(folders))
    return items


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_scan(entry: os.DirEntry) -> bool:
    """An image name (whatever the file turns out to be: a FIFO named scan.png is reported
    when it is read), or an extension-less regular file with a DICOM header."""
    path = Path(entry.path)
    if is_image_file(path):
        return True
    try:
        regular = entry.is_file()
    except OSError:
        return False
    return not path.suffix and regular and is_dicom_file(path)
