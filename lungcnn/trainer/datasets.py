"""Datasets described by a folder layout or by a manifest CSV, and runs that combine several.

A dataset is one of:
- a folder DIR/{train,test}/<class>/<scans> (every scan's source is the folder's name and
  its age group "unknown");
- a folder holding `manifest.csv`, or that CSV itself: one row per scan with the columns
  `file` (relative to the CSV's folder) and `label` (a class name), and optionally `source`,
  `age_group`, `split` (`train` or `test`; default `train`) and `finding` (e.g. `nodule`;
  default blank). Other columns are ignored.

`lungcnn train --data A --data B` combines datasets: each keeps its name (its folder's), and
the run reads them through RUN_DIR/data/<name>, a link to each dataset, so that every stage
after training finds a scan as `data_dir / rel_path` whatever the number of datasets.
No TensorFlow here.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from lungcnn.edge.contract import CLASS_NAMES
from lungcnn.trainer.dataset import DatasetError, Sample, list_split

MANIFEST_NAME = "manifest.csv"
REQUIRED_COLUMNS = ("file", "label")
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Dataset:
    name: str
    root: Path  # scans are root / sample.rel_path
    kind: str  # "folder" or "manifest"
    samples: tuple[Sample, ...]
    manifest_sha256: str | None = None

    def describe(self) -> dict:
        """What a run manifest records of this dataset."""
        return {
            "name": self.name,
            "root": str(self.root.resolve()),
            "kind": self.kind,
            "manifest_sha256": self.manifest_sha256,
            "scans": len(self.samples),
            "sources": sorted({s.source for s in self.samples}),
        }


def read_dataset(path: str | Path) -> Dataset:
    """The dataset at `path`: a manifest CSV, a folder holding one, or a folder layout.
    Raises DatasetError with a one-line reason."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return _read_manifest(path, name=path.parent.name)
    if not path.is_dir():
        raise DatasetError(f"{path}: no such folder or manifest CSV")
    if (path / MANIFEST_NAME).is_file():
        return _read_manifest(path / MANIFEST_NAME, name=path.name)
    samples = [replace(s, source=path.name, split=split)
               for split in ("train", "test") if (path / split).is_dir()
               for s in list_split(path, split)]
    if not samples:
        raise DatasetError(f"{path}: neither {MANIFEST_NAME} nor train/<class>/ folders")
    return Dataset(path.name, path, "folder", tuple(samples))


def combine(datasets: Sequence[Dataset], link_dir: Path) -> tuple[Path, list[Sample]]:
    """The root every sample path is relative to, and all samples. One dataset is read in
    place; several are linked under `link_dir` (created) as link_dir/<name>."""
    if len(datasets) == 1:
        return datasets[0].root, list(datasets[0].samples)
    names = [d.name for d in datasets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DatasetError(f"two datasets are named {', '.join(repeated)}: rename a folder")
    link_dir.mkdir(parents=True, exist_ok=True)
    samples = []
    for dataset in datasets:
        _link(link_dir / dataset.name, dataset.root)
        samples += [replace(s, rel_path=f"{dataset.name}/{s.rel_path}") for s in dataset.samples]
    return link_dir, samples


def provenance(samples: Sequence[Sample]) -> dict[str, list[str]]:
    """rel_path -> [source, age_group], for the run manifest."""
    return {s.rel_path: [s.source, s.age_group] for s in samples}


def counts_by_source(splits: dict[str, Sequence[Sample]]) -> dict:
    """{split: {source: {"<class>/<age group>[/<finding>]": scans}}}, sorted; the finding
    part only for scans that have one."""
    counts: dict = {}
    for split, samples in splits.items():
        for s in samples:
            cell = counts.setdefault(split, {}).setdefault(s.source, {})
            key = "/".join(filter(None, (CLASS_NAMES[s.label], s.age_group, s.finding)))
            cell[key] = cell.get(key, 0) + 1
    return {split: {source: dict(sorted(cells.items())) for source, cells in sorted(by.items())}
            for split, by in counts.items()}


def _read_manifest(csv_path: Path, name: str) -> Dataset:
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{csv_path}: cannot read ({error})") from None
    rows = list(csv.DictReader(text.splitlines()))
    missing = [c for c in REQUIRED_COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise DatasetError(f"{csv_path}: needs the columns {', '.join(REQUIRED_COLUMNS)}"
                           + (f" (missing {', '.join(missing)})" if missing else "; no rows"))
    samples = [_sample(csv_path, number, row) for number, row in enumerate(rows, start=2)]
    seen: set[str] = set()
    for sample in samples:
        if sample.rel_path in seen:
            raise DatasetError(f"{csv_path}: {sample.rel_path} is listed twice")
        seen.add(sample.rel_path)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return Dataset(name, csv_path.parent, "manifest", tuple(samples), digest)


def _sample(csv_path: Path, line: int, row: dict) -> Sample:
    where = f"{csv_path}:{line}"
    file = (row.get("file") or "").strip()
    relative = PurePosixPath(file)
    if not file or relative.is_absolute() or ".." in relative.parts:
        raise DatasetError(f"{where}: file must be a path inside the dataset, got {file!r}")
    label = (row.get("label") or "").strip()
    if label not in CLASS_NAMES:
        raise DatasetError(f"{where}: label {label!r} is not one of {', '.join(CLASS_NAMES)}")
    split = (row.get("split") or "train").strip()
    if split not in ("train", "test"):
        raise DatasetError(f"{where}: split must be train or test, got {split!r}")
    return Sample(
        rel_path=relative.as_posix(),
        label=CLASS_NAMES.index(label),
        source=(row.get("source") or "").strip() or csv_path.parent.name,
        age_group=(row.get("age_group") or "").strip() or UNKNOWN,
        split=split,
        finding=(row.get("finding") or "").strip(),
    )


def _link(link: Path, target: Path) -> None:
    target = target.resolve()
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise DatasetError(f"{link}: exists and is not a dataset link")
    link.symlink_to(target, target_is_directory=True)
