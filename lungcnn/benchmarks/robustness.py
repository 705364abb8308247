"""Acquisition changes a scan may go through before it reaches a device, and how often a
model's label survives them.

Each change is a pure function `(gray, size) -> model input`: it takes a 2-D uint8 grayscale
scan at its own resolution (as `edge.contract.read_grayscale` returns it), alters it the way
another scanner, export or re-encoding would, and returns the (size, size, 1) uint8 array of
`edge.contract.resize_gray`, so the model sees exactly what the device would feed it.
Only numpy and Pillow; never TensorFlow.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from lungcnn.edge.contract import read_grayscale, resize_gray

Change = Callable[[np.ndarray, int], np.ndarray]

LOW_RESOLUTION = 224
# Sigma of the mild blur, in pixels of a 640 px scan; scaled with the scan's own size so the
# blur means the same thing for a 240 px and a 4000 px file.
BLUR_SIGMA_AT_640 = 1.5
CONTRAST_FACTOR = 0.75
BRIGHTNESS_FACTOR = 1.2
JPEG_QUALITY = 50
ROTATION_DEGREES = 5.0
# A 16-bit export rarely uses the full 0-65535 range; the contract maps the real range back.
SIXTEEN_BIT_RANGE = (1000, 41000)


def original(gray: np.ndarray, size: int) -> np.ndarray:
    """The unchanged scan, for reference."""
    return resize_gray(gray, size)


def downscale_upscale(gray: np.ndarray, size: int) -> np.ndarray:
    """Shrink to 224 px (longest side kept proportional) and enlarge back, as a re-encoded copy."""
    image = _to_image(gray)
    restored = shrink_longest_side(image, LOW_RESOLUTION).resize(image.size, Image.Resampling.BILINEAR)
    return _to_input(restored, size)


def gaussian_blur(gray: np.ndarray, size: int) -> np.ndarray:
    """A mild gaussian blur, as from a softer detector or a resampled export."""
    sigma = BLUR_SIGMA_AT_640 * max(gray.shape) / 640
    return _to_input(_to_image(gray).filter(ImageFilter.GaussianBlur(sigma)), size)


def lower_contrast(gray: np.ndarray, size: int) -> np.ndarray:
    """Contrast reduced to 75% around the mean grey, as from other windowing."""
    return _to_input(ImageEnhance.Contrast(_to_image(gray)).enhance(CONTRAST_FACTOR), size)


def brighter(gray: np.ndarray, size: int) -> np.ndarray:
    """Brightness raised by 20% (clipped at 255), as from other exposure or display settings."""
    return _to_input(ImageEnhance.Brightness(_to_image(gray)).enhance(BRIGHTNESS_FACTOR), size)


def jpeg_q50(gray: np.ndarray, size: int) -> np.ndarray:
    """Re-encoded as JPEG at quality 50."""
    return _to_input(jpeg_roundtrip(_to_image(gray), JPEG_QUALITY), size)


def rotate_5deg(gray: np.ndarray, size: int) -> np.ndarray:
    """Rotated 5 degrees counter-clockwise; corners filled black like a scan's background."""
    rotated = _to_image(gray).rotate(
        ROTATION_DEGREES, resample=Image.Resampling.BILINEAR, fillcolor=0
    )
    return _to_input(rotated, size)


def sixteen_bit_export(gray: np.ndarray, size: int) -> np.ndarray:
    """Written as a 16-bit PNG over a partial range and read back through the contract."""
    low, high = SIXTEEN_BIT_RANGE
    wide = np.rint(low + gray.astype(np.float64) * ((high - low) / 255.0)).astype(np.uint16)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scan16.png"
        Image.fromarray(wide).save(path)
        return resize_gray(read_grayscale(path), size)


ACQUISITION_CHANGES: dict[str, Change] = {
    "downscale_224": downscale_upscale,
    "blur": gaussian_blur,
    "contrast": lower_contrast,
    "brightness": brighter,
    "jpeg_q50": jpeg_q50,
    "rotate_5deg": rotate_5deg,
    "sixteen_bit": sixteen_bit_export,
}


def label_stability(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    scans: Iterable[str | Path | np.ndarray],
    size: int,
    changes: dict[str, Change] | None = None,
    baseline: np.ndarray | None = None,
) -> dict[str, float]:
    """Share of scans whose predicted label is unchanged by each acquisition change.

    `scans` are files or 2-D uint8 grayscale arrays. `predict_fn` takes a uint8 batch of
    shape (n, size, size, 1) and returns class probabilities (n, classes) or labels (n,).
    `baseline`, when given, is what `predict_fn` already returned for the unchanged scans
    (`original`), so they are not predicted a second time.
    """
    changes = ACQUISITION_CHANGES if changes is None else changes
    grays = [_as_gray(scan) for scan in scans]
    if not grays:
        raise ValueError("label_stability needs at least one scan")
    if baseline is None:
        baseline = predict_fn(np.stack([original(gray, size) for gray in grays]))
    baseline = _as_labels(baseline)
    return {
        name: float(np.mean(_labels(predict_fn, [change(gray, size) for gray in grays]) == baseline))
        for name, change in changes.items()
    }


def _labels(predict_fn: Callable[[np.ndarray], np.ndarray], inputs: Sequence[np.ndarray]) -> np.ndarray:
    return _as_labels(predict_fn(np.stack(inputs)))


def _as_labels(outputs) -> np.ndarray:
    outputs = np.asarray(outputs)
    return outputs.argmax(axis=1) if outputs.ndim == 2 else outputs.astype(int)


def _as_gray(scan: str | Path | np.ndarray) -> np.ndarray:
    if isinstance(scan, np.ndarray):
        gray = scan[:, :, 0] if scan.ndim == 3 and scan.shape[2] == 1 else scan
        if gray.ndim != 2 or gray.dtype != np.uint8:
            raise ValueError("a scan array must be 2-D uint8 grayscale")
        return gray
    return read_grayscale(scan)


def shrink_longest_side(image: Image.Image, side: int) -> Image.Image:
    """`image` resized (bilinear) so its longest side is `side` px, aspect ratio kept."""
    scale = side / max(image.size)
    small = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(small, Image.Resampling.BILINEAR)


def jpeg_roundtrip(image: Image.Image, quality: int) -> Image.Image:
    """`image` encoded as JPEG at `quality` and decoded back as grayscale ("L")."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("L")


def _to_image(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(gray)


def _to_input(image: Image.Image, size: int) -> np.ndarray:
    return resize_gray(np.asarray(image, dtype=np.uint8), size)
