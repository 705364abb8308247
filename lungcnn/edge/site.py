"""A site's labelled scans, as `edge-classify validate` and `adapt` read them (no TensorFlow):

- a folder SITE/<class>/... (each class folder searched recursively, like `edge-classify`
  searches a folder), the class folders named as the model's classes; or
- a manifest CSV (or a folder holding `manifest.csv`) with the columns `file` (relative to
  the CSV's folder) and `label` (a class name), like `lungcnn train --data`; other columns
  are ignored.

A site may have only some of the classes; a class the model does not know is refused.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from lungcnn.edge.api import Classifier
from lungcnn.edge.decode import ScanError
from lungcnn.edge.inputs import folder_items

MANIFEST_NAME = "manifest.csv"


class SiteError(ValueError):
    """Site data that cannot be used (one line)."""


@dataclass(frozen=True)
class SiteScan:
    path: Path
    label: int  # index into the model's class names


def read_site(site: str | Path, class_names: Sequence[str]) -> list[SiteScan]:
    """The labelled scans of `site` (SiteError when there are none, or a label is unknown)."""
    site = Path(site)
    if site.is_file() and site.suffix.lower() == ".csv":
        scans = _from_csv(site, class_names)
    elif (site / MANIFEST_NAME).is_file():
        scans = _from_csv(site / MANIFEST_NAME, class_names)
    elif site.is_dir():
        scans = _from_folders(site, class_names)
    else:
        raise SiteError(f"{site}: no such folder or manifest CSV")
    if not scans:
        raise SiteError(f"{site}: no scans found")
    return scans


def _from_folders(site: Path, class_names: Sequence[str]) -> list[SiteScan]:
    folders = sorted(p for p in site.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p.name for p in folders if p.name not in class_names]
    if unknown:
        raise SiteError(f"{site}: folder {unknown[0]!r} is not a class of the model "
                        f"({', '.join(class_names)})")
    scans = []
    for folder in folders:
        for item in folder_items(folder):
            if item.error is not None:
                raise SiteError(f"{item.path}: {item.error}")
            scans.append(SiteScan(item.path, class_names.index(folder.name)))
    return scans


def _from_csv(csv_path: Path, class_names: Sequence[str]) -> list[SiteScan]:
    try:
        rows = list(csv.DictReader(csv_path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise SiteError(f"{csv_path}: cannot read ({error})") from None
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise SiteError(f"{csv_path}: needs the columns file and label, and rows")
    scans = []
    for line, row in enumerate(rows, start=2):
        file, label = (row.get("file") or "").strip(), (row.get("label") or "").strip()
        relative = PurePosixPath(file)
        if not file or relative.is_absolute() or ".." in relative.parts:
            raise SiteError(f"{csv_path}:{line}: file must be a path inside the site, "
                            f"got {file!r}")
        if label not in class_names:
            raise SiteError(f"{csv_path}:{line}: label {label!r} is not a class of the model "
                            f"({', '.join(class_names)})")
        scans.append(SiteScan(csv_path.parent / relative, class_names.index(label)))
    return scans


def site_features(classifier: Classifier, scans: Sequence[SiteScan],
                  progress: Callable[[int], None] = lambda done: None) -> np.ndarray:
    """The model's features of each scan, (scans, dim); the first scan that cannot be read
    raises SiteError naming it."""
    return site_outputs(classifier, scans, progress)[1]


def site_outputs(classifier: Classifier, scans: Sequence[SiteScan],
                 progress: Callable[[int], None] = lambda done: None,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The model's probabilities (scans, classes) and features (scans, dim) of each scan,
    one scan at a time; the first scan that cannot be read raises SiteError naming it."""
    rows = []
    for done, scan in enumerate(scans, start=1):
        try:
            gray = classifier.decode(scan.path).gray
        except ScanError as error:
            raise SiteError(f"{scan.path}: {error}") from None
        model = classifier.runtime
        probabilities, features = model.run(model.model_input(gray)[None])
        rows.append((probabilities[0], features[0]))
        progress(done)
    return (np.stack([p for p, _ in rows]).astype(np.float64),
            np.stack([f for _, f in rows]).astype(np.float64))
