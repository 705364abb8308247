"""How an original file becomes a stored file of a fetched dataset.

These are the build rules of the multi-source set (data/multisource/README.md), so a fetched
copy matches the curated one:

* a longer side above MAX_SIDE px is down-scaled with Pillow LANCZOS to MAX_SIDE, aspect kept;
  nothing else changes (no crop, no intensity change);
* PNG stays PNG: 8-bit grayscale `L` when all channels are equal, alpha dropped when fully
  opaque, otherwise the image's own mode (palette images are expanded to RGB/RGBA first);
* JPEG (and MPO, a JPEG with extra frames) becomes JPEG quality JPEG_QUALITY, grayscale when
  the RGB channels differ by at most GRAY_TOLERANCE levels;
* any other format (WebP) becomes PNG under the PNG rules;
* a label mask whose lung labels are listed (masks.csv `lung_values`) becomes an 8-bit PNG,
  255 where the original's gray value is one of them, 0 elsewhere (lung_mask).

The real format decides, not the file name. Pillow's default encoder settings are used, and
the image's own metadata that Pillow carries over (a JPEG comment, a PNG ICC profile) is kept.
This is dataset building, not model preprocessing: the model's input is still made by
edge.contract from the stored file.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_SIDE = 1024
JPEG_QUALITY = 95
GRAY_TOLERANCE = 4
JPEG_FORMATS = ("JPEG", "MPO")


class EncodeError(ValueError):
    """The original file cannot be decoded as an image (one-line reason)."""


@dataclass(frozen=True)
class Encoded:
    """A stored file: its bytes, the extension its format takes, and its size."""

    data: bytes
    suffix: str  # ".jpg" or ".png"
    width: int
    height: int
    resized: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def reencode(original: bytes) -> Encoded:
    """Apply the resizing and encoding rules to the bytes of an original file."""
    image, source_format = _decode(original)
    as_jpeg = source_format in JPEG_FORMATS
    image = _expand(image, as_jpeg)
    resized = max(image.size) > MAX_SIDE
    if resized:
        image = image.resize(scaled_size(image.size), Image.Resampling.LANCZOS)
    image = _jpeg_mode(image) if as_jpeg else _png_mode(image)
    out = io.BytesIO()
    if as_jpeg:
        image.save(out, "JPEG", quality=JPEG_QUALITY)
    else:
        image.save(out, "PNG")
    return Encoded(out.getvalue(), ".jpg" if as_jpeg else ".png", *image.size, resized)


def lung_mask(original: bytes, lung_values: tuple[int, ...]) -> Encoded:
    """The binary lung mask (0 / 255, 8-bit PNG) of a label mask whose lungs are LUNG_VALUES."""
    image, _ = _decode(original)
    labels = np.asarray(image.convert("L"))
    mask = Image.fromarray(np.where(np.isin(labels, lung_values), 255, 0).astype(np.uint8))
    out = io.BytesIO()
    mask.save(out, "PNG")
    return Encoded(out.getvalue(), ".png", *mask.size, resized=False)


def pixel_sha256(data: bytes) -> str:
    """Checksum of a stored file's decoded pixels (mode, size and values), blind to the encoder."""
    image, _ = _decode(data)
    header = f"{image.mode} {image.width}x{image.height}\n".encode()
    return hashlib.sha256(header + image.tobytes()).hexdigest()


def scaled_size(size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) with the longer side MAX_SIDE and the aspect ratio kept."""
    scale = MAX_SIDE / max(size)
    return tuple(max(1, round(side * scale)) for side in size)


def _decode(data: bytes) -> tuple[Image.Image, str]:
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            source_format = opened.format or ""
            image = opened.copy()  # copy() keeps info; the file object can close
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise EncodeError(f"not a readable image ({error})") from None
    return image, source_format


def _expand(image: Image.Image, as_jpeg: bool) -> Image.Image:
    """Bring palette, CMYK and YCbCr images to a mode the rules below can inspect."""
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if as_jpeg and image.mode not in ("L", "RGB"):
        return image.convert("RGB")
    return image


def _png_mode(image: Image.Image) -> Image.Image:
    if image.mode in ("LA", "RGBA") and image.getchannel("A").getextrema() == (255, 255):
        image = image.convert(image.mode[:-1])
    if image.mode == "RGB" and _channel_spread(image) == 0:
        image = image.convert("L")
    return image


def _jpeg_mode(image: Image.Image) -> Image.Image:
    if image.mode == "RGB" and _channel_spread(image) <= GRAY_TOLERANCE:
        return image.convert("L")
    return image


def _channel_spread(image: Image.Image) -> int:
    """The largest difference between the R, G and B values of one pixel."""
    pixels = np.asarray(image, dtype=np.int16)
    return int((pixels.max(axis=2) - pixels.min(axis=2)).max())
