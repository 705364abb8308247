"""Decode lists of scan files through the shared contract, skipping (and naming) bad ones."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcnn.edge.contract import Preprocessor, as_preprocessor
from lungcnn.edge.decode import ScanError
from lungcnn.edge.manifest import sha256_file


@dataclass(frozen=True)
class ScanBatch:
    """The scans that decoded, in order, and one line per file that did not."""

    paths: tuple[Path, ...]
    images: np.ndarray  # (n, size, size, 1) uint8, raw 0-255
    skipped: tuple[str, ...]


def load_scans(paths: Sequence[Path], contract: int | Preprocessor) -> ScanBatch:
    """Model inputs of `paths` under `contract` (a Preprocessor, or contract 1's input size)."""
    contract = as_preprocessor(contract)
    size = contract.spec.size
    loaded, images, skipped = [], [], []
    for path in paths:
        try:
            images.append(contract.prepare(contract.decode(path).gray).model_input)
        except ScanError as error:
            skipped.append(f"{path}: {error}")
            continue
        loaded.append(Path(path))
    stacked = np.stack(images) if images else np.zeros((0, size, size, 1), np.uint8)
    return ScanBatch(tuple(loaded), stacked, tuple(skipped))


def files_digest(paths: Sequence[Path], root: Path) -> str:
    """SHA-256 over each file's name (`split_name`) and content hash, in order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{split_name(path, root)}\t{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def split_name(path: Path, root: Path) -> str:
    """A file's name as a run's split lists it: relative to the dataset root, or absolute when
    the split names an absolute path outside it (a hand-made run manifest may)."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()
