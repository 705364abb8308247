"""Provenance manifests of a fetchable dataset, and the manifest and checksums of a fetched copy.

A fetchable dataset is a folder (data/<name>/ in this repository) holding

* `manifest.csv`: one row per image, IMAGE_COLUMNS: where the file goes (`file`), its
  metadata, and where it comes from (`origin_repo` at `origin_commit`, `origin_path`, the
  original's `origin_sha256`) plus the SHA-256 and size of the stored (re-encoded) file;
* `masks.csv` (optional): one row per mask, MASK_COLUMNS; the original's checksum is not
  known, so a mask is checked by the stored file's `sha256` or its decoded `pixel_sha256`.
  `lung_values` blank: the original's pixels are kept; else the listed gray values (e.g.
  `150 200`, right and left lung) become 255 and every other value 0;
* `README.md` (optional): licenses and attribution, copied next to the fetched files.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from PIL import Image

IMAGE_COLUMNS = (
    "file", "label", "source", "age_group", "view", "sex", "age", "license",
    "origin_repo", "origin_commit", "origin_path", "origin_sha256", "sha256", "width", "height",
    "finding",
)  # fmt: skip
MASK_COLUMNS = (
    "file", "image", "source", "license", "origin_repo", "origin_commit", "origin_path",
    "sha256", "pixel_sha256", "width", "height", "lung_values",
)  # fmt: skip
SUMS_NAME = "SHA256SUMS"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


class ManifestError(ValueError):
    """A provenance manifest that cannot be used (one line naming the file and row)."""


@dataclass(frozen=True)
class Entry:
    """One file to fetch: where it comes from, where it goes, how to check it."""

    file: str  # path inside the fetched folder
    source: str
    image: str  # the image this file belongs to (itself for an image)
    origin_repo: str
    origin_commit: str
    origin_path: str
    origin_sha256: str  # "" when not known (masks)
    sha256: str  # of the stored file in the curated copy
    pixel_sha256: str = ""  # of its decoded pixels (masks)
    lung_values: tuple[int, ...] = ()  # masks: values that become 255, others 0 (): kept
    row: Mapping[str, str] = field(default_factory=dict)  # manifest row of an image


@dataclass(frozen=True)
class FetchableDataset:
    folder: Path
    images: tuple[Entry, ...]
    masks: tuple[Entry, ...]

    @property
    def readme(self) -> Path | None:
        path = self.folder / "README.md"
        return path if path.is_file() else None


def load_dataset(folder: Path) -> FetchableDataset:
    """Read and check FOLDER/manifest.csv and FOLDER/masks.csv; raises ManifestError."""
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise ManifestError(f"{folder}: no provenance manifest.csv")
    images = _entries(manifest, IMAGE_COLUMNS, "images")
    masks_csv = folder / "masks.csv"
    masks = _entries(masks_csv, MASK_COLUMNS, "masks") if masks_csv.is_file() else ()
    _check_unique(manifest, [e.file for e in images + masks])
    known = {e.file for e in images}
    for mask in masks:
        if mask.image not in known:
            raise ManifestError(f"{masks_csv}: {mask.file}: its image {mask.image} is not listed")
    return FetchableDataset(folder, images, masks)


def origin_url(base_url: str, entry: Entry) -> str:
    """The raw-file URL of ENTRY's original at its pinned commit."""
    path = quote(entry.origin_path, safe="/@")
    return f"{base_url.rstrip('/')}/{entry.origin_repo}/{entry.origin_commit}/{path}"


def read_sums(path: Path) -> dict[str, str]:
    """file -> SHA-256 from a SHA256SUMS file; later lines win, malformed lines are skipped."""
    sums: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            digest, _, name = line.partition("  ")
            if _SHA256.fullmatch(digest) and name:
                sums[name] = digest
    return sums


def append_sum(path: Path, digest: str, file: str) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"{digest}  {file}\n")


def write_sums(path: Path, sums: Iterable[tuple[str, str]]) -> None:
    _replace_text(path, "".join(f"{digest}  {file}\n" for file, digest in sums))


def write_copy(dataset: FetchableDataset, out_dir: Path, present: Mapping[str, str]) -> int:
    """OUT_DIR/manifest.csv (the images present, with the checksums and sizes of the files
    written), OUT_DIR/SHA256SUMS and the README. PRESENT: file -> sha256 of the verified files.
    Returns the number of images listed."""
    rows = []
    for entry in dataset.images:
        if entry.file in present:
            with Image.open(out_dir / entry.file) as image:
                width, height = image.size
            digest = present[entry.file]
            rows.append({**entry.row, "sha256": digest, "width": width, "height": height})
    tmp = out_dir / "manifest.csv.part"
    with open(tmp, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=IMAGE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out_dir / "manifest.csv")
    write_sums(out_dir / SUMS_NAME, present.items())
    if dataset.readme:
        shutil.copyfile(dataset.readme, out_dir / "README.md")
    return len(rows)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _entries(path: Path, columns: tuple[str, ...], top: str) -> tuple[Entry, ...]:
    return tuple(_entry(path, line, row, top) for line, row in _rows(path, columns))


def _rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in columns if c not in (reader.fieldnames or ())]
            if missing:
                raise ManifestError(f"{path}: missing columns {', '.join(missing)}")
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ManifestError(f"{path}: unreadable ({error})") from None
    if not rows:
        raise ManifestError(f"{path}: no rows")
    return rows


def _entry(path: Path, line: int, row: dict, top: str) -> Entry:
    where = f"{path}:{line}"
    values = {key: (value or "").strip() for key, value in row.items() if key}
    file = values["file"]
    _check_file(where, file, top, values)
    for key, pattern in (("origin_commit", _COMMIT), ("origin_repo", _REPO), ("sha256", _SHA256)):
        if not pattern.fullmatch(values[key]):
            raise ManifestError(f"{where}: {file}: bad {key} {values[key]!r}")
    checksum = "origin_sha256" if top == "images" else "pixel_sha256"
    if not _SHA256.fullmatch(values[checksum]):
        raise ManifestError(f"{where}: {file}: bad {checksum} {values[checksum]!r}")
    if not values["origin_path"] or ".." in PurePosixPath(values["origin_path"]).parts:
        raise ManifestError(f"{where}: {file}: bad origin_path {values['origin_path']!r}")
    return Entry(
        file=file,
        source=values["source"],
        image=values.get("image", file) if top == "masks" else file,
        origin_repo=values["origin_repo"],
        origin_commit=values["origin_commit"],
        origin_path=values["origin_path"],
        origin_sha256=values.get("origin_sha256", ""),
        sha256=values["sha256"],
        pixel_sha256=values.get("pixel_sha256", ""),
        lung_values=_lung_values(where, file, values.get("lung_values", "")),
        row={c: values[c] for c in IMAGE_COLUMNS} if top == "images" else {},
    )


def _lung_values(where: str, file: str, text: str) -> tuple[int, ...]:
    values = text.split()
    if not all(v.isdigit() and int(v) <= 255 for v in values):
        raise ManifestError(f"{where}: {file}: bad lung_values {text!r} (gray values 0-255)")
    return tuple(int(v) for v in values)


def _check_file(where: str, file: str, top: str, values: dict) -> None:
    """images/<source>/<label>/<name> or masks/<source>/<name>, .jpg or .png, nothing else."""
    parts = PurePosixPath(file).parts
    expected = (top, values["source"])
    if top == "images":
        expected += (values["label"],)
    if (
        "\\" in file
        or len(parts) != len(expected) + 1
        or parts[:-1] != expected
        or any(part in ("", ".", "..") for part in parts)
        or PurePosixPath(file).suffix not in (".jpg", ".png")
    ):
        layout = "images/<source>/<label>/<name>" if top == "images" else "masks/<source>/<name>"
        raise ManifestError(f"{where}: file {file!r} is not {layout}.jpg|.png")


def _check_unique(path: Path, files: list[str]) -> None:
    seen: set[str] = set()
    for file in files:
        if file in seen:
            raise ManifestError(f"{path}: {file} is listed twice")
        seen.add(file)
