"""The representative images that set the ranges of int8 quantization: training images only.
("Calibration" is the calibrate stage's: temperature and trust thresholds.)

By default every file of the run's "train" split; `--representative DIR` replaces them with a
folder of class subfolders (the dataset layout) or a flat folder of images. Validation and
test images are refused, so nothing about them leaks into the quantized model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcnn.convert.errors import ConvertError
from lungcnn.convert.scans import files_digest, load_scans
from lungcnn.edge.decode import is_image_file
from lungcnn.edge.contract import Preprocessor
from lungcnn.trainer.dataset import DatasetError, list_split


@dataclass(frozen=True)
class RepresentativeSet:
    images: np.ndarray  # (n, size, size, 1) uint8
    description: dict  # saved in the int8 manifest as "representative_set"


def representative_from_run(run_manifest: dict, data_dir: Path,
                            size: int | Preprocessor) -> RepresentativeSet:
    split = run_manifest["split"]
    paths = [data_dir / rel for rel in split["train"]]
    return _representative_set(
        paths,
        data_dir,
        size,
        source="run split 'train'",
        extra={"split_sha256": split.get("sha256"), "split_seed": split.get("seed")},
    )


def representative_from_folder(
    folder: Path, size: int | Preprocessor, class_names: Sequence[str], forbidden: set[Path]
) -> RepresentativeSet:
    """`forbidden`: resolved paths of the run's validation and test files."""
    paths, layout = _folder_images(folder, class_names)
    leaked = [path for path in paths if path.resolve() in forbidden]
    if leaked:
        raise ConvertError(
            f"representative folder {folder} holds {len(leaked)} validation/test file(s) of the run "
            f"(e.g. {leaked[0]}); use training images only"
        )
    return _representative_set(
        paths, folder, size, source=f"folder {folder}", extra={"layout": layout}
    )


def _representative_set(
    paths: list[Path], root: Path, size: int | Preprocessor, *, source: str, extra: dict
) -> RepresentativeSet:
    batch = load_scans(paths, size)
    if not len(batch.images):
        raise ConvertError(
            f"no readable representative image in {source} ({len(paths)} file(s) tried)"
        )
    description = {
        "source": source,
        "count": len(batch.images),
        **extra,
        "files_sha256": files_digest(batch.paths, root),
        "skipped": list(batch.skipped),
    }
    return RepresentativeSet(batch.images, description)


def _folder_images(folder: Path, class_names: Sequence[str]) -> tuple[list[Path], str]:
    if not folder.is_dir():
        raise ConvertError(f"representative folder {folder}: not found or not a directory")
    entries = [entry for entry in folder.iterdir() if not entry.name.startswith(".")]
    if not any(entry.is_dir() for entry in entries):
        images = sorted(entry for entry in entries if entry.is_file() and is_image_file(entry))
        if not images:
            raise ConvertError(f"representative folder {folder}: no image files")
        return images, "flat"
    if any(entry.is_file() and is_image_file(entry) for entry in entries):
        raise ConvertError(
            f"representative folder {folder}: mixes images and subfolders "
            f"(expected class folders {', '.join(class_names)}, or only images)"
        )
    try:
        samples = list_split(folder.parent, folder.name)
    except DatasetError as error:
        raise ConvertError(f"representative folder {error}") from None
    return [folder.parent / sample.rel_path for sample in samples], "class folders"
