"""Dataset folders, the train/validation split, decoding, and duplicate (leak) detection.

Layout: ROOT/train/<class>/<scans> and ROOT/test/<class>/<scans>, class folders named as in
edge.contract.CLASS_NAMES (which also gives the label order). Any image format and size that
edge.contract reads is accepted. No TensorFlow here; the tf.data pipeline is trainer/pipeline.py.

Duplicates are found two ways: exact (SHA-256 of the file bytes) and near (Pearson
correlation of 64x64 grayscale thumbnails >= 0.96, which is blind to re-encoding, resizing
and brightness/contrast changes). On the vendored data the re-windowed copies of one scan
correlate at 0.970 or more, while the most similar distinct scans (follow-ups of one
patient) stay at 0.936 or less.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from lungcnn.edge.contract import CLASS_NAMES, Preprocessor, as_preprocessor, resize_gray
from lungcnn.edge.decode import ScanError, is_image_file, read_grayscale

SPLITS = ("train", "test")
THUMBNAIL_SIZE = 64
NEAR_DUPLICATE_CORRELATION = 0.96
_CHUNK = 1024  # rows per block of the pairwise similarity matrix


class DatasetError(ValueError):
    """The dataset folder is missing or not in the expected layout (one-line reason)."""


class UnreadableScans(ValueError):
    """Some scans could not be decoded; `failures` holds (relative path, reason) pairs."""

    def __init__(self, failures: list[tuple[str, str]]):
        self.failures = failures
        super().__init__(
            f"{len(failures)} unreadable file(s), first: {failures[0][0]}: {failures[0][1]}"
        )


@dataclass(frozen=True)
class Sample:
    rel_path: str  # POSIX path relative to the dataset root, e.g. "train/Covid/01.jpeg"
    label: int  # index into CLASS_NAMES
    source: str = "unknown"  # where the scan comes from (trainer.datasets)
    age_group: str = "unknown"  # adult, pediatric or unknown
    split: str = "train"  # train (the pool validation is carved from) or test
    finding: str = ""  # a manifest's `finding` (e.g. nodule); blank when it has none

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.label]


@dataclass(frozen=True)
class Fingerprint:
    """What duplicate detection compares: the file's bytes hash and a normalised thumbnail."""

    sha256: str
    thumbnail: np.ndarray  # float32 (THUMBNAIL_SIZE**2,), zero mean, unit norm (or all zero)


@dataclass(frozen=True)
class DecodedScans:
    """Scans decoded once: images exactly as the model's contract (`edge.contract.prepare`)
    makes them."""

    samples: list[Sample]
    images: np.ndarray  # (n, size, size, 1) uint8, raw 0-255
    fingerprints: list[Fingerprint]

    @property
    def labels(self) -> np.ndarray:
        return np.array([sample.label for sample in self.samples], dtype=np.int64)


@dataclass(frozen=True)
class Duplicate:
    first: str
    second: str
    kind: Literal["exact", "near"]
    similarity: float  # thumbnail correlation (1.0 for exact duplicates)


def default_data_dir() -> Path:
    """The vendored dataset of this repository (present in a source checkout)."""
    return Path(__file__).resolve().parents[2] / "data" / "covid19-dataset"


def list_split(root: str | Path, split: str) -> list[Sample]:
    """Every scan of ROOT/split/<class>/, sorted by class order then file name.

    Raises DatasetError when the folder or a class folder is missing, a folder is not a
    known class, or the split holds no scan."""
    root = Path(root)
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetError(f"{split_dir}: no such folder (expected {root}/{{train,test}}/<class>/)")
    folders = {p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    unknown = sorted(folders - set(CLASS_NAMES))
    missing = [name for name in CLASS_NAMES if name not in folders]
    if unknown or missing:
        raise DatasetError(
            f"{split_dir}: class folders must be {', '.join(CLASS_NAMES)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            + (f"; missing: {', '.join(missing)}" if missing else "")
        )
    samples = [
        Sample(path.relative_to(root).as_posix(), label, split=split)
        for label, name in enumerate(CLASS_NAMES)
        for path in sorted((split_dir / name).iterdir())
        if path.is_file() and is_image_file(path)
    ]
    if not samples:
        raise DatasetError(f"{split_dir}: no image files")
    return samples


def label_of(rel_path: str, class_names: Sequence[str] = CLASS_NAMES) -> int:
    """The label of a dataset file ("train/Covid/01.jpeg"): its class folder's index in
    `class_names`. Raises DatasetError when the folder is not a class."""
    folder = PurePosixPath(rel_path).parent.name
    if folder not in class_names:
        raise DatasetError(
            f"{rel_path}: folder {folder!r} is not one of the classes {', '.join(class_names)}"
        )
    return list(class_names).index(folder)


def decode_scans(root: str | Path, samples: Sequence[Sample],
                 contract: int | Preprocessor) -> DecodedScans:
    """Decode each file once into its model input under `contract` (a Preprocessor, or the
    input size of contract 1) and its fingerprint.

    Raises UnreadableScans listing every file that failed (after trying all of them)."""
    root = Path(root)
    contract = as_preprocessor(contract)
    size = contract.spec.size
    images, fingerprints, failures = [], [], []
    for sample in samples:
        try:
            gray, fingerprint = _read_with_fingerprint(root / sample.rel_path,
                                                       contract.spec.decode_side)
        except ScanError as error:
            failures.append((sample.rel_path, str(error)))
            continue
        images.append(contract.prepare(gray).model_input)  # exactly what the device feeds
        fingerprints.append(fingerprint)
    if failures:
        raise UnreadableScans(failures)
    stacked = np.stack(images) if images else np.zeros((0, size, size, 1), np.uint8)
    return DecodedScans(list(samples), stacked, fingerprints)


def fingerprint_files(
    root: str | Path, rel_paths: Iterable[str]
) -> tuple[dict[str, Fingerprint], list[tuple[str, str]]]:
    """Fingerprints of the readable files, and (relative path, reason) for the others."""
    fingerprints, failures = {}, []
    for rel_path in rel_paths:
        try:
            fingerprints[rel_path] = _read_with_fingerprint(Path(root) / rel_path)[1]
        except ScanError as error:
            failures.append((rel_path, str(error)))
    return fingerprints, failures


def fingerprint(data: bytes, gray: np.ndarray) -> Fingerprint:
    """Fingerprint of a file's bytes and its decoded 2-D grayscale image."""
    thumbnail = resize_gray(gray, THUMBNAIL_SIZE).astype(np.float32).ravel()
    thumbnail -= thumbnail.mean()
    norm = float(np.linalg.norm(thumbnail))
    if norm > 0:
        thumbnail /= norm
    return Fingerprint(hashlib.sha256(data).hexdigest(), thumbnail)


def find_duplicates(
    first: Mapping[str, Fingerprint], second: Mapping[str, Fingerprint] | None = None
) -> list[Duplicate]:
    """Exact and near-duplicate pairs within `first` (when `second` is None) or between
    `first` and `second`, sorted. Near means different bytes but thumbnail correlation
    >= NEAR_DUPLICATE_CORRELATION. A file never pairs with itself."""
    within = second is None
    second = first if second is None else second
    names_a, names_b = list(first), list(second)
    matrix_b = _thumbnail_matrix([second[name] for name in names_b])
    pairs: dict[tuple[str, str], float] = {}
    for start in range(0, len(names_a), _CHUNK):
        block = names_a[start : start + _CHUNK]
        similarity = _thumbnail_matrix([first[name] for name in block]) @ matrix_b.T
        for row, column in np.argwhere(similarity >= NEAR_DUPLICATE_CORRELATION):
            pairs[(block[row], names_b[column])] = round(float(similarity[row, column]), 4)
    by_hash: dict[str, list[str]] = {}
    for name in names_b:
        by_hash.setdefault(second[name].sha256, []).append(name)
    for name_a in names_a:
        for name_b in by_hash.get(first[name_a].sha256, []):
            pairs[(name_a, name_b)] = 1.0
    duplicates = []
    for (name_a, name_b), similarity in sorted(pairs.items()):
        if name_a == name_b or (within and name_a > name_b):
            continue
        exact = first[name_a].sha256 == second[name_b].sha256
        duplicates.append(Duplicate(name_a, name_b, "exact" if exact else "near", similarity))
    return duplicates


def leaked_test_files(
    test: Mapping[str, Fingerprint], train: Mapping[str, Fingerprint]
) -> dict[str, list[Duplicate]]:
    """Test files that duplicate (exactly or nearly) some training file, with the matches."""
    leaks: dict[str, list[Duplicate]] = {}
    for duplicate in find_duplicates(test, train):
        leaks.setdefault(duplicate.first, []).append(duplicate)
    return leaks


def leak_free_test(root: str | Path) -> list[Sample]:
    """The test samples of ROOT that duplicate no file of ROOT/train (exactly or nearly).

    Decodes every scan of the dataset; unreadable files raise UnreadableScans."""
    train, test = list_split(root, "train"), list_split(root, "test")
    prints, failures = fingerprint_files(root, [s.rel_path for s in train + test])
    if failures:
        raise UnreadableScans(failures)
    leaks = leaked_test_files(
        {s.rel_path: prints[s.rel_path] for s in test},
        {s.rel_path: prints[s.rel_path] for s in train},
    )
    return [s for s in test if s.rel_path not in leaks]


def split_sha256(split: Mapping[str, Sequence[str]]) -> str:
    """A hash of the split lists, to check two runs used the same files."""
    canonical = json.dumps({name: list(files) for name, files in split.items()}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _thumbnail_matrix(prints: Sequence[Fingerprint]) -> np.ndarray:
    if not prints:
        return np.zeros((0, THUMBNAIL_SIZE * THUMBNAIL_SIZE), np.float32)
    return np.stack([p.thumbnail for p in prints])


def _read_with_fingerprint(path: Path, decode_side: int | None = None
                           ) -> tuple[np.ndarray, Fingerprint]:
    gray = read_grayscale(path, decode_side)  # raises ScanError with a one-line reason
    return gray, fingerprint(path.read_bytes(), gray)
