"""Acquisition transforms: the same scan as another scanner, export or re-encoding would
deliver it. One set of transforms and constants, used by the device's trust checks (the
re-acquisition variants of a model input) and by the robustness and trust benchmarks (changes
of the scan at its own resolution). Only numpy and Pillow.

Mild on purpose: a change a scan plausibly goes through between two sites, not a stress test
(strong variants would flag most in-distribution test scans too).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from lungcnn.edge.contract import Preprocessor, model_input_of
from lungcnn.edge.decode import read_grayscale

JPEG_QUALITY = 50
CONTRAST_FACTOR = 0.85
# Gaussian sigma of the blur for a 256 px image, scaled with the image's own side (at least
# BLUR_MIN_SIGMA), so the blur means the same thing for a 160 px input and a 4000 px file.
BLUR_SIGMA_AT_256 = 1.0
BLUR_MIN_SIGMA = 0.5
LOW_RESOLUTION_FACTOR = 0.5  # of the model input's side
LOW_RESOLUTION_MIN_SIDE = 16
REFRAME_MARGIN = 0.04  # of the side, cropped on each edge
DOWNSCALE_SIDE = 224  # longest side of a re-encoded copy of a full scan
BRIGHTNESS_FACTOR = 1.2
ROTATION_DEGREES = 5.0
# A 16-bit export rarely uses the full 0-65535 range; the contract maps the real range back.
SIXTEEN_BIT_RANGE = (1000, 41000)

# (decoded scan, contract: a Preprocessor or contract 1's input size) -> its model input
Change = Callable[[np.ndarray, int | Preprocessor], np.ndarray]
"""A change of a full scan: (2-D uint8 gray at its own resolution, size) -> model input."""


# --- the primitives ---


def blur(image: Image.Image) -> Image.Image:
    sigma = max(BLUR_MIN_SIGMA, BLUR_SIGMA_AT_256 * max(image.size) / 256)
    return image.filter(ImageFilter.GaussianBlur(sigma))


def lower_contrast(image: Image.Image) -> Image.Image:
    return ImageEnhance.Contrast(image).enhance(CONTRAST_FACTOR)


def brighter(image: Image.Image) -> Image.Image:
    """Brightness raised (clipped at 255), as from other exposure or display settings."""
    return ImageEnhance.Brightness(image).enhance(BRIGHTNESS_FACTOR)


def rotate(image: Image.Image) -> Image.Image:
    """Rotated counter-clockwise; corners filled black like a scan's background."""
    return image.rotate(ROTATION_DEGREES, resample=Image.Resampling.BILINEAR, fillcolor=0)


def reframe(image: Image.Image) -> Image.Image:
    """A slightly tighter crop, enlarged back to the image's size."""
    width, height = image.size
    margin = max(1, round(min(width, height) * REFRAME_MARGIN))
    return image.crop((margin, margin, width - margin, height - margin)).resize(
        image.size, Image.Resampling.BILINEAR
    )


def shrink_longest_side(image: Image.Image, side: int) -> Image.Image:
    """`image` resized (bilinear) so its longest side is `side` px, aspect ratio kept."""
    scale = side / max(image.size)
    small = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(small, Image.Resampling.BILINEAR)


def jpeg_roundtrip(image: Image.Image, quality: int = JPEG_QUALITY) -> Image.Image:
    """`image` encoded as JPEG at `quality` and decoded back as grayscale ("L")."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("L")


def sixteen_bit_export(gray: np.ndarray) -> np.ndarray:
    """`gray` written as a 16-bit PNG over a partial range and read back through the contract."""
    low, high = SIXTEEN_BIT_RANGE
    wide = np.rint(low + gray.astype(np.float64) * ((high - low) / 255.0)).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(wide).save(buffer, format="PNG")
    return read_grayscale(buffer.getvalue())


# --- re-acquisitions of a model input (the device's stability check) ---


def _low_resolution_jpeg(image: Image.Image) -> Image.Image:
    side = image.size[0]
    small = image.resize((max(LOW_RESOLUTION_MIN_SIDE, round(side * LOW_RESOLUTION_FACTOR)),) * 2,
                         Image.Resampling.BILINEAR)
    return jpeg_roundtrip(small).resize((side, side), Image.Resampling.BILINEAR)


REACQUISITIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "low_resolution_jpeg": _low_resolution_jpeg,
    "blur": blur,
    "lower_contrast": lower_contrast,
    "reframed": reframe,
}


def reacquisitions(model_input: np.ndarray) -> dict[str, np.ndarray]:
    """Cheap re-acquisitions of a (size, size, 1) uint8 model input, each of the same shape."""
    image = Image.fromarray(model_input[:, :, 0])
    return {name: np.asarray(make(image), dtype=np.uint8)[:, :, None]
            for name, make in REACQUISITIONS.items()}


# --- changes of a full scan (the robustness and trust benchmarks) ---


def _changed(transform: Callable[[Image.Image], Image.Image]) -> Change:
    def change(gray: np.ndarray, contract: int | Preprocessor) -> np.ndarray:
        changed = np.asarray(transform(Image.fromarray(gray)), dtype=np.uint8)
        return model_input_of(changed, contract)

    change.__doc__ = transform.__doc__
    return change


def original(gray: np.ndarray, contract: int | Preprocessor) -> np.ndarray:
    """The unchanged scan, for reference."""
    return model_input_of(gray, contract)


def _downscale(image: Image.Image) -> Image.Image:
    """Shrunk to DOWNSCALE_SIDE px (longest side) and enlarged back, as a re-encoded copy."""
    return shrink_longest_side(image, DOWNSCALE_SIDE).resize(image.size,
                                                             Image.Resampling.BILINEAR)


def _sixteen_bit(gray: np.ndarray, contract: int | Preprocessor) -> np.ndarray:
    return model_input_of(sixteen_bit_export(gray), contract)


ACQUISITION_CHANGES: dict[str, Change] = {
    "downscale_224": _changed(_downscale),
    "blur": _changed(blur),
    "contrast": _changed(lower_contrast),
    "brightness": _changed(brighter),
    "jpeg_q50": _changed(jpeg_roundtrip),
    "rotate_5deg": _changed(rotate),
    "sixteen_bit": _sixteen_bit,
}
