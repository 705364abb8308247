"""Decode lists of scan files through the shared contract, skipping (and naming) bad ones."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcnn.edge.contract import ScanError, load_scan
from lungcnn.edge.manifest import sha256_file


@dataclass(frozen=True)
class ScanBatch:
    """The scans that decoded, in order, and one line per file that did not."""

    paths: tuple[Path, ...]
    images: np.ndarray  # (n, size, size, 1) uint8, raw 0-255
    skipped: tuple[str, ...]


def load_scans(paths: Sequence[Path], size: int) -> ScanBatch:
    loaded, images, skipped = [], [], []
    for path in paths:
        try:
            images.append(load_scan(path, size))
        except ScanError as error:
            skipped.append(f"{path}: {error}")
            continue
        loaded.append(Path(path))
    stacked = np.stack(images) if images else np.zeros((0, size, size, 1), np.uint8)
    return ScanBatch(tuple(loaded), stacked, tuple(skipped))


def files_digest(paths: Sequence[Path], root: Path) -> str:
    """SHA-256 over each file's name (relative to `root`) and content hash, in order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{Path(path).relative_to(root).as_posix()}\t{sha256_file(path)}\n".encode())
    return digest.hexdigest()
