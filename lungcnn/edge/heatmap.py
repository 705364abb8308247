"""Occlusion-sensitivity heatmaps: which parts of the scan the prediction depends on.

A mid-gray square is slid over a coarse grid of the model input; where covering the image
lowers the predicted class's probability most, the model was looking. Needs only a model
(`edge.model.Model`), numpy and Pillow: no TensorFlow, no gradients. Cost: grid * grid
occluded inputs through the model, in batches of BATCH (plus the unoccluded input, unless
its probabilities are passed in).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from lungcnn.edge.errors import NOTICE
from lungcnn.edge.manifest import write_bytes_atomic
from lungcnn.edge.model import Model

DEFAULT_GRID = 8
BATCH = 16
OVERLAY_OPACITY = 0.55
DISPLAY_SIZE = 384
# A small "inferno"-like colour ramp: dark purple -> red -> yellow (anchor positions 0..1).
_RAMP = np.array(
    [
        (0.00, 0, 0, 4),
        (0.25, 87, 16, 110),
        (0.50, 188, 55, 84),
        (0.75, 249, 142, 9),
        (1.00, 252, 255, 164),
    ],
    dtype=np.float64,
)
DISCLAIMER = NOTICE  # in every heatmap PNG's text chunks


def occlusion_heatmap(
    model: Model,
    model_input: np.ndarray,
    grid: int = DEFAULT_GRID,
    target: int | None = None,
    base: np.ndarray | None = None,
) -> tuple[np.ndarray, int, np.ndarray]:
    """Drop in the probability of `target` (default: the predicted class) when each grid
    cell's neighbourhood is covered, as a (grid, grid) float array (negative = covering it
    made the class more likely), plus the target class and the unoccluded probabilities
    (`base`: those probabilities when already computed, so the input is not run again)."""
    if model_input.ndim != 3 or model_input.shape[2] != 1 or model_input.dtype != np.uint8:
        raise ValueError("model_input must be a (size, size, 1) uint8 array")
    if base is None:
        base = model.run(model_input[None])[0][0]
    base = np.asarray(base, dtype=np.float64)
    target = int(np.argmax(base)) if target is None else target
    occluded = list(_occluded_inputs(model_input, grid))
    probabilities = np.concatenate(
        [np.asarray(model.run(np.stack(occluded[i : i + BATCH]))[0], dtype=np.float64)
         for i in range(0, len(occluded), BATCH)]
    )
    drops = base[target] - probabilities[:, target]
    return drops.reshape(grid, grid), target, base


def _occluded_inputs(model_input: np.ndarray, grid: int):
    """The input with a square of twice the cell side, centred on each cell, set to mid-gray."""
    size = model_input.shape[0]
    cell = size / grid
    fill = np.uint8(round(float(model_input.mean())))
    for row in range(grid):
        for column in range(grid):
            top, left = int(round((row - 0.5) * cell)), int(round((column - 0.5) * cell))
            bottom, right = int(round((row + 1.5) * cell)), int(round((column + 1.5) * cell))
            covered = model_input.copy()
            covered[max(0, top) : bottom, max(0, left) : right] = fill
            yield covered


def colorize(heat: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB uint8 with the ramp above."""
    heat = np.clip(heat, 0.0, 1.0)
    channels = [np.interp(heat, _RAMP[:, 0], _RAMP[:, c]) for c in (1, 2, 3)]
    return np.stack(channels, axis=-1).astype(np.uint8)


def overlay(gray: np.ndarray, drops: np.ndarray, size: int = DISPLAY_SIZE) -> Image.Image:
    """The scan in gray with the positive drops (evidence for the class) in colour on top."""
    scan = Image.fromarray(gray).convert("L").resize((size, size), Image.Resampling.BILINEAR)
    peak = float(drops.max())
    normalized = np.clip(drops / peak, 0.0, 1.0) if peak > 0 else np.zeros_like(drops)
    heat = np.asarray(
        Image.fromarray(normalized.astype(np.float32), mode="F").resize(
            (size, size), Image.Resampling.BICUBIC
        )
    )
    heat = np.clip(heat, 0.0, 1.0)
    base = np.repeat(np.asarray(scan, dtype=np.float64)[:, :, None], 3, axis=2)
    alpha = (OVERLAY_OPACITY * heat)[:, :, None]
    blended = (1 - alpha) * base + alpha * colorize(heat).astype(np.float64)
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8), mode="RGB")


def save_overlay(
    path: str | Path,
    gray: np.ndarray,
    drops: np.ndarray,
    caption: dict[str, str] | None = None,
    size: int = DISPLAY_SIZE,
) -> Path:
    """Write the overlay as a PNG; `caption` goes into PNG text chunks with the disclaimer."""
    info = PngInfo()
    for key, value in {**(caption or {}), "Disclaimer": DISCLAIMER}.items():
        info.add_text(key, str(value))
    buffer = io.BytesIO()
    overlay(gray, drops, size).save(buffer, format="PNG", pnginfo=info, optimize=True)
    return write_bytes_atomic(path, buffer.getvalue())


def heatmap_path(scan_path: Path, out_dir: Path, taken: set[str]) -> Path:
    """OUT_DIR/<scan stem>.heatmap.png, numbered when two scans share a stem."""
    stem = Path(scan_path).stem or Path(scan_path).name
    name, number = f"{stem}.heatmap.png", 1
    while name in taken:
        number += 1
        name = f"{stem}-{number}.heatmap.png"
    taken.add(name)
    return Path(out_dir) / name


def heatmap_caption(scan_path: str | Path, label: str, probability: float,
                    grid: int) -> dict[str, str]:
    """The PNG text chunks of a heatmap (the notice is added by `save_overlay`)."""
    return {
        "Scan": Path(scan_path).name,
        "Class": label,
        "Probability": f"{probability:.3f}",
        "Method": f"occlusion sensitivity, {grid}x{grid} grid",
    }
