"""File (or bytes) -> 2-D uint8 grayscale, and its colourfulness, from one decode.

The one place that opens scan files. Anything that is not a regular file (a FIFO, a device,
a socket) is refused from `stat` before it is opened, and the open never blocks. Pixels are
converted in tiles of at most TILE_PIXELS, so a large or high-bit-depth image needs only its
decoded buffer plus the uint8 result, never a full-size float copy. Only numpy and Pillow
(pydicom for DICOM, `lungcnn.edge.dicom`); never TensorFlow.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from lungcnn.edge.errors import ScanError, first_line
from lungcnn.edge.headers import check_declared_sizes
from lungcnn.edge.pixels import (
    DECODE_MEMORY,
    MAX_PIXELS,
    TILE_PIXELS,
    check_decode_memory,
    check_pixel_limit,
    pillow_decode_bytes,
    real_range,
    scale_to_uint8,
    tiles,
)
from lungcnn.edge.quiet import decoder_warnings_silenced

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".dcm", ".dicom"}
)
# What Pillow may decode (by content); the rest (EPS via Ghostscript, PSD, ...) is refused.
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
SUPPORTED_FORMATS = "PNG, JPEG, BMP, TIFF, WebP or DICOM"
HIGH_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_COLOURLESS_MODES = HIGH_BIT_MODES | {"1", "L", "LA", "La"}
_COLOUR_SIDE = 256  # colourfulness is measured on a reduced copy at most this size
_DICOM_MAGIC_OFFSET = 128
_ORIENTATION_TAG = 0x0112
_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


@dataclass(frozen=True)
class DecodedScan:
    """A scan decoded once: its grayscale pixels at its own resolution and the
    Hasler-Suesstrunk colourfulness of its colours (0 for grayscale and DICOM files)."""

    gray: np.ndarray  # 2-D uint8
    colourfulness: float = 0.0


def decode_scan(source: str | Path | bytes, min_side: int | None = None) -> DecodedScan:
    """Decode any supported scan, a file or its bytes (an upload). The format is recognised by
    content, not by extension. With `min_side`, a scan whose shorter side is at least twice
    that is decoded at a reduced scale (JPEG's DCT scaling, else Pillow's box `reduce`) whose
    shorter side is still at least `min_side`. Raises ScanError."""
    if isinstance(source, bytes):
        if not source:
            raise ScanError("empty file")
        return _decode_stream(io.BytesIO(source), min_side)
    with open_scan_file(Path(source)) as handle:
        return _decode_stream(handle, min_side)


def read_grayscale(source: str | Path | bytes, min_side: int | None = None) -> np.ndarray:
    """`decode_scan(source, min_side).gray`: the scan as a 2-D uint8 grayscale array."""
    return decode_scan(source, min_side).gray


def is_image_file(path: Path) -> bool:
    """True for names a folder scan should pick up (case-insensitive extension)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def is_dicom_file(path: Path) -> bool:
    """True if `path` is a regular file that starts like a DICOM file (DICOM folders often have
    no extensions); never blocks on a FIFO or device."""
    try:
        with open_scan_file(Path(path)) as handle:
            return _is_dicom(handle.read(_DICOM_MAGIC_OFFSET + 4))
    except ScanError:
        return False


def file_problem(info: os.stat_result) -> str | None:
    """Why a file with this `stat` cannot be a scan (None for a non-empty regular file)."""
    if stat.S_ISDIR(info.st_mode):
        return "is a directory"
    for test, kind in _FILE_KINDS:
        if test(info.st_mode):
            return f"not a regular file: {kind}"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    return "empty file" if info.st_size == 0 else None


def open_scan_file(path: Path) -> BinaryIO:
    """Open a scan for reading: a non-empty regular file, checked before and after the
    (non-blocking) open, so a FIFO or a device never blocks. Raises ScanError."""
    try:
        problem = file_problem(os.stat(path))
        if problem is None:
            descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
            problem = _still_regular(descriptor)
    except OSError as error:
        raise ScanError(os_error_reason(error)) from None
    except ValueError:  # a NUL byte in the name
        raise ScanError("invalid file name (it holds a NUL byte)") from None
    if problem is not None:
        raise ScanError(problem)
    return os.fdopen(descriptor, "rb")


def _still_regular(descriptor: int) -> str | None:
    """The problem with an opened file (swapped for a FIFO since `stat`?); closes it if any."""
    problem = file_problem(os.fstat(descriptor))
    if problem is not None:
        os.close(descriptor)
    return problem


def os_error_reason(error: OSError) -> str:
    """A short lower-case reason for an OSError from opening or listing a path."""
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "is a directory"
    if isinstance(error, PermissionError):
        return "permission denied"
    return f"cannot read: {error.strerror or first_line(error)}"


def _decode_stream(handle: BinaryIO, min_side: int | None = None) -> DecodedScan:
    head = handle.read(_DICOM_MAGIC_OFFSET + 4)
    if not head:
        raise ScanError("empty file")
    handle.seek(0)
    if _is_dicom(head):
        from lungcnn.edge.dicom import read_dicom  # only for DICOM: saves start-up time

        return DecodedScan(_reduced(read_dicom(handle, min_side), min_side))
    check_declared_sizes(handle, head)
    return _decode_with_pillow(handle, min_side)


def _is_dicom(head: bytes) -> bool:
    return head[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM"


def _decode_with_pillow(handle: BinaryIO, min_side: int | None) -> DecodedScan:
    try:
        # Pillow's own bomb check (above MAX_PIXELS) warns at open; check_pixel_limit refuses.
        with decoder_warnings_silenced, Image.open(handle, formats=PILLOW_FORMATS) as image:
            check_pixel_limit(image.size)
            if min_side and image.format == "JPEG" and image.mode in ("L", "RGB"):
                image.draft(image.mode, _reduced_size(image.size, min_side))
            with DECODE_MEMORY.held(_decode_bytes(image)):
                image.load()
                orientation = image.getexif().get(_ORIENTATION_TAG)
                gray = _pil_to_gray(image)
                colour = _colourfulness_of(image)
    except ScanError:
        raise
    except Image.UnidentifiedImageError:
        raise ScanError(f"not a supported image format ({SUPPORTED_FORMATS})") from None
    except Image.DecompressionBombError:
        raise ScanError(f"image larger than the {MAX_PIXELS:,}-pixel limit") from None
    except MemoryError:
        raise ScanError("not enough memory to decode this image") from None
    except PermissionError:
        raise ScanError("permission denied") from None
    except Exception as error:  # decoders raise many types on bad data (struct.error, ...)
        raise ScanError(f"corrupt or truncated image ({first_line(error)})") from None
    return DecodedScan(_reduced(_oriented(gray, orientation), min_side), colour)


def _reduced_size(size: tuple[int, int], min_side: int) -> tuple[int, int]:
    """The smallest size of `size`'s proportions whose shorter side is `min_side`."""
    scale = min_side / min(size)
    return (min(size[0], -int(-size[0] * scale // 1)), min(size[1], -int(-size[1] * scale // 1)))


def _reduced(gray: np.ndarray, min_side: int | None) -> np.ndarray:
    """`gray` box-reduced by the largest whole factor that keeps its shorter side at least
    `min_side`."""
    factor = min(gray.shape) // min_side if min_side else 1
    if factor < 2:
        return gray
    return np.asarray(Image.fromarray(gray).reduce(factor), dtype=np.uint8)


def _decode_bytes(image: Image.Image) -> int:
    """What decoding `image` will hold (raises ScanError when over the budget)."""
    progressive = bool(image.info.get("progressive") or image.info.get("progression"))
    needed = pillow_decode_bytes(image.format, image.mode, len(image.getbands()), progressive)
    what = f"{'progressive ' if progressive else ''}{image.format} {image.mode}"
    return check_decode_memory(image.size, needed, what)


def _pil_to_gray(image: Image.Image) -> np.ndarray:
    """Every conversion here is per pixel, so tile by tile equals the whole image at once."""
    width, height = image.size
    gray = np.empty((height, width), dtype=np.uint8)
    if image.mode in HIGH_BIT_MODES:
        boxes = list(tiles(width, height))
        value_range = real_range(np.asarray(image.crop(box)) for box in boxes)
        for left, top, right, bottom in boxes:
            tile = np.asarray(image.crop((left, top, right, bottom)))
            gray[top:bottom, left:right] = scale_to_uint8(tile, value_range)
        return gray
    for left, top, right, bottom in tiles(width, height):
        gray[top:bottom, left:right] = _tile_to_gray(_region(image, (left, top, right, bottom)))
    return gray


def _region(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """`image.crop(box)`, without the copy when the box is the whole image."""
    return image if box == (0, 0, *image.size) else image.crop(box)


def _tile_to_gray(image: Image.Image) -> np.ndarray:
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        image = _flatten_alpha(image)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return np.asarray(image if image.mode == "L" else image.convert("L"), dtype=np.uint8)


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite on black: a scan's transparent margin is background, and background is dark."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _oriented(gray: np.ndarray, orientation) -> np.ndarray:
    transpose = _TRANSPOSES.get(orientation) if isinstance(orientation, int) else None
    if transpose is None:
        return gray
    return np.asarray(Image.fromarray(gray, mode="L").transpose(transpose), dtype=np.uint8)


def _colourfulness_of(image: Image.Image) -> float:
    """Of the image box-reduced to at most _COLOUR_SIDE px a side. Pillow reduces RGB in one
    pass into the small copy; other colour modes go strip by strip through RGB, so no
    full-size copy is made (Pillow's own reduce of RGBA premultiplies a full-size copy)."""
    if image.mode in _COLOURLESS_MODES:
        return 0.0
    factor = max(1, -(-max(image.size) // _COLOUR_SIDE))
    small = image.reduce(factor) if image.mode == "RGB" else _reduced_via_rgb(image, factor)
    return colourfulness(np.asarray(small, dtype=np.float64))


def _reduced_via_rgb(image: Image.Image, factor: int) -> Image.Image:
    width, height = image.size
    small = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    rows = max(factor, TILE_PIXELS // width // factor * factor)
    for top in range(0, height, rows):
        strip = _region(image, (0, top, width, min(top + rows, height))).convert("RGB")
        small.paste(strip.reduce(factor), (0, top // factor))
    return small


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler-Suesstrunk colourfulness of an H x W x 3 array: about 0 for a gray image."""
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = red - green, 0.5 * (red + green) - blue
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
