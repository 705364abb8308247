"""Pixel arithmetic shared by the decoders (`edge.decode`, `edge.dicom`): the pixel and memory
limits checked from a file's header, the tiles images are converted in, and the scaling of
high-bit data onto 0-255.

Memory is bounded by construction: an image is decoded only if what its decoder holds (the
decoded buffer, and for some formats a second whole-image buffer) fits DECODE_BUDGET (shared by the decodes running at once on several threads); the
conversion to gray then adds the 1-byte result and a few tiles. `lungcnn.benchmarks.memory`
measures the peak for every format at the largest size each one accepts."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np

from lungcnn.edge.errors import ScanError

# Refuse anything larger before decoding it fully; below Pillow's own bomb warning (89 MP).
MAX_PIXELS = 8192 * 8192
# Resizing needs coefficient tables as long as the image's long side: a thin image within
# MAX_PIXELS (67,108,864 x 1) would need gigabytes of them. A 64:1 strip at the pixel limit
# (a case of benchmarks.memory) is still accepted.
MAX_SIDE = 65536
TILE_PIXELS = 1 << 19  # pixels converted at a time: float64 temporaries stay a few MB
DECODE_BUDGET = 256 * 2**20  # bytes a decoder may hold for one image
# Bytes per pixel Pillow stores a decoded image in (every other mode takes 4).
_PILLOW_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
# Decoders that hold whole-image buffers of their own besides Pillow's (libtiff's strip or
# tile buffer, libwebp's decoded frame and its lossless transforms), as multiples of it.
_DECODER_COPIES = {"TIFF": 2, "WEBP": 4}
_COEFFICIENT_BYTES = 2  # a progressive JPEG keeps every DCT coefficient, per band and pixel


def pillow_decode_bytes(image_format: str, mode: str, bands: int,
                        progressive: bool = False) -> int:
    """Bytes per pixel that decoding an image of this format and mode holds at its peak."""
    stored = _PILLOW_BYTES.get(mode, 4)
    held = stored * _DECODER_COPIES.get(image_format, 1)
    if image_format == "JPEG" and progressive:
        held += _COEFFICIENT_BYTES * bands
    return held


def check_decode_memory(size: tuple[int, int], bytes_per_pixel: float, what: str) -> int:
    """The bytes decoding the image would hold; refused, from the header, when that is more
    than DECODE_BUDGET."""
    width, height = size
    needed = width * height * bytes_per_pixel
    if needed > DECODE_BUDGET:
        raise ScanError(
            f"image of {width}x{height} pixels ({what}) needs about {needed / 2**20:,.0f} MiB "
            f"to decode, over the {DECODE_BUDGET // 2**20} MiB a scan may use; "
            "save it smaller (a model input is far smaller) or as 8-bit grayscale"
        )
    return int(needed)


class DecodeMemory:
    """DECODE_BUDGET shared by the decodes running at once on the threads of a process
    (`edge.workers`): a decode waits until the others leave room for it, so the peak does not
    grow with the number of workers. One decode alone never waits."""

    def __init__(self, budget: int = DECODE_BUDGET):
        self.budget = budget
        self._free = budget
        self._changed = threading.Condition()

    @contextmanager
    def held(self, nbytes: int):
        nbytes = min(max(0, nbytes), self.budget)
        with self._changed:
            self._changed.wait_for(lambda: self._free >= nbytes)
            self._free -= nbytes
        try:
            yield
        finally:
            with self._changed:
                self._free += nbytes
                self._changed.notify_all()


DECODE_MEMORY = DecodeMemory()


def largest_accepted_pixels(bytes_per_pixel: float) -> int:
    """The most pixels an image needing `bytes_per_pixel` to decode may have."""
    return min(MAX_PIXELS, int(DECODE_BUDGET // bytes_per_pixel))


def check_pixel_limit(size: tuple[int, int], frames: int = 1) -> None:
    """Refuse an image (of `frames` frames of `size`) over MAX_PIXELS or MAX_SIDE, or empty."""
    width, height = size
    if width * height * frames > MAX_PIXELS:
        what = f"{width}x{height}" + (f"x{frames}" if frames > 1 else "")
        raise ScanError(f"image of {what} pixels exceeds the {MAX_PIXELS:,}-pixel limit")
    if width < 1 or height < 1:
        raise ScanError("image has no pixels")
    if max(width, height) > MAX_SIDE:
        raise ScanError(f"image of {width}x{height} pixels is longer than {MAX_SIDE:,} pixels "
                        "on a side; not a chest X-ray")


def tiles(width: int, height: int):
    """(left, top, right, bottom) boxes of at most TILE_PIXELS covering the image, row-major."""
    columns = min(width, TILE_PIXELS)
    rows = max(1, TILE_PIXELS // columns)
    for top in range(0, height, rows):
        for left in range(0, width, columns):
            yield left, top, min(left + columns, width), min(top + rows, height)


def real_range(tiles_of_values) -> tuple[float, float]:
    """(min, max) of the finite values over all tiles: the range high-bit data is scaled by.
    Raises ScanError when no value is finite."""
    low, high = np.inf, -np.inf
    for values in tiles_of_values:
        values = np.asarray(values)
        if values.dtype.kind == "f":
            values = values[np.isfinite(values)]
        if values.size:
            low, high = min(low, float(values.min())), max(high, float(values.max()))
    if low > high:
        raise ScanError("image has no finite pixel values")
    return low, high


def scale_to_uint8(values: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Map `value_range` onto 0-255 (one tile: float64 here costs little); NaN becomes the
    low end, values outside the range are clipped. A 3-D tile (colour) is averaged first."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 3:
        values = values.mean(axis=2)
    low, high = value_range
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.nan_to_num(values, nan=low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


