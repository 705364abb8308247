"""Lung-mask pairs for the lung-field segmenter, and their augmentation.

A dataset with masks holds `masks/<source>/<stem>.png` (0 = background, 255 = lung) beside the
image `manifest.csv` lists for that source and stem (the multi-source set). Images go through
the contract's decode and the segmenter's input resize (`edge.contract.segmenter_input`), so
the segmenter is trained on exactly what the device feeds it.

The augmentation keeps the mask and changes what the scan looks like: geometry (applied to
both), acquisition (gamma, contrast, blur, noise, resolution) and opacities inside the lung
(consolidation-like blobs and haze), because only normal lungs have masks here and a device
meets Covid and pneumonia lungs.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from lungcnn.edge.decode import read_grayscale
from lungcnn.edge.contract import segmenter_input


@dataclass(frozen=True)
class MaskPair:
    source: str
    stem: str
    image: np.ndarray  # (side, side) uint8, the segmenter input
    mask: np.ndarray  # (side, side) float32 in {0, 1}


def find_mask_pairs(dataset: Path) -> list[tuple[str, Path, Path]]:
    """(source, image path, mask path) for every manifest row whose mask exists."""
    manifest = dataset / "manifest.csv"
    if not manifest.is_file():
        return []
    pairs = []
    with manifest.open(newline="") as handle:
        for row in csv.DictReader(handle):
            source = row.get("source", "")
            mask = dataset / "masks" / source / f"{Path(row['file']).stem}.png"
            if source and mask.is_file():
                pairs.append((source, dataset / row["file"], mask))
    return pairs


def load_mask_pairs(datasets: list[Path], side: int) -> list[MaskPair]:
    loaded = []
    for dataset in datasets:
        for source, image_path, mask_path in find_mask_pairs(dataset):
            image = segmenter_input(read_grayscale(image_path), side)
            mask = Image.open(mask_path).convert("L").resize((side, side), Image.Resampling.BILINEAR)
            loaded.append(MaskPair(source, image_path.stem, image,
                                   (np.asarray(mask) > 127).astype(np.float32)))
    return loaded


def held_out_part(pairs: list[MaskPair], fraction: float, seed: int) -> np.ndarray:
    """A boolean array: the held-out `fraction` of each source, drawn with `seed`."""
    held = np.zeros(len(pairs), dtype=bool)
    rng = np.random.default_rng(seed)
    for source in sorted({p.source for p in pairs}):
        index = np.flatnonzero([p.source == source for p in pairs])
        held[rng.permutation(index)[: round(fraction * len(index))]] = True
    return held


def augmented(pair: MaskPair, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    image, mask = _geometric(pair.image, pair.mask, rng)
    image = _opacities(image, mask, rng)
    return _acquisition(image, rng), mask


def _geometric(image: np.ndarray, mask: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    side = image.shape[0]
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    angle = np.deg2rad(rng.uniform(-12, 12))
    scale = rng.uniform(0.7, 1.2)  # < 1 shows more around the chest (neck, abdomen)
    shift = rng.uniform(-0.1, 0.1, size=2) * side
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    # Output pixel (x, y) samples the input at R(angle) / scale @ ((x, y) - origin) + centre.
    origin_x, origin_y = side / 2 + shift
    coefficients = (cos, sin, side / 2 - cos * origin_x - sin * origin_y,
                    -sin, cos, side / 2 + sin * origin_x - cos * origin_y)

    def warp(array: np.ndarray, resample) -> np.ndarray:
        picture = Image.fromarray(np.ascontiguousarray(array))
        return np.asarray(picture.transform((side, side), Image.Transform.AFFINE, coefficients,
                                            resample=resample, fillcolor=0))

    warped_mask = warp((mask * 255).astype(np.uint8), Image.Resampling.BILINEAR) > 127
    return warp(image, Image.Resampling.BILINEAR), warped_mask.astype(np.float32)


def _opacities(image: np.ndarray, mask: np.ndarray, rng) -> np.ndarray:
    """Whitening inside the lung: 1-4 consolidation-like blobs and, sometimes, a haze."""
    lung = np.flatnonzero(mask.ravel())
    if not len(lung) or rng.random() < 0.4:
        return image
    side = image.shape[0]
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    added = np.zeros_like(yy)
    for centre in rng.choice(lung, size=rng.integers(1, 5)):
        sigma = rng.uniform(0.04, 0.18) * side
        cy, cx = divmod(int(centre), side)
        added += rng.uniform(40, 150) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    if rng.random() < 0.4:
        added += rng.uniform(20, 90) * mask
    soft = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(side / 40)), dtype=np.float32) / 255
    return np.clip(image + added * soft, 0, 255).astype(np.uint8)


def _acquisition(image: np.ndarray, rng) -> np.ndarray:
    values = image.astype(np.float32) / 255
    values = values ** rng.uniform(0.6, 1.6)
    values = (values - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.1, 0.1)
    if rng.random() < 0.3:
        values = values + rng.normal(0, rng.uniform(0.01, 0.05), values.shape)
    result = Image.fromarray((np.clip(values, 0, 1) * 255).astype(np.uint8))
    if rng.random() < 0.3:
        result = result.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    if rng.random() < 0.3:
        side = result.size[0]
        small = max(8, round(side * rng.uniform(0.3, 0.7)))
        result = result.resize((small, small), Image.Resampling.BILINEAR).resize(
            (side, side), Image.Resampling.BILINEAR)
    return np.asarray(result, dtype=np.uint8)
