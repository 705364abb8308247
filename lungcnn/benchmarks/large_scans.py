"""The largest scan the decoder accepts in every format and mode, written at benchmark time
(they compress to little on disk, but decode to the most memory).

Each writer takes (path, pixels) and writes a square image of about that many pixels (or
another shape) of a smooth ramp with a little texture, so PNG/TIFF/JPEG files stay small.
`accepted_pixels(name)` is the most pixels `edge.decode` accepts for the case, from the same
memory model it refuses larger images with.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, TiffImagePlugin

from lungcnn.benchmarks.synthetic_dicom import (
    encapsulated_dicom,
    j2k_declaring,
    secondary_capture,
)
from lungcnn.edge.pixels import MAX_PIXELS, largest_accepted_pixels, pillow_decode_bytes

JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"


def _ramp(height: int, width: int, high: float) -> np.ndarray:
    """float32 values from 0 to `high` across the image, with a fine checker texture."""
    rows = np.linspace(0, high / 2, height, dtype=np.float32)[:, None]
    columns = np.linspace(0, high / 2, width, dtype=np.float32)[None, :]
    ramp = rows + columns
    ramp[::8, ::8] *= 0.9
    return ramp


def _gray8(side: int) -> Image.Image:
    return Image.fromarray(_ramp(side, side, 255).astype(np.uint8), mode="L")


def _rgb8(side: int) -> Image.Image:
    gray = _gray8(side)
    return Image.merge("RGB", (gray, gray.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gray))


def _png_16bit(path: Path, pixels: int) -> None:
    side = math.isqrt(pixels)
    Image.fromarray(_ramp(side, side, 65535).astype(np.uint16)).save(path, format="PNG")


def _png_16bit_wide(path: Path, pixels: int) -> None:
    height = 1024
    width = pixels // height  # a 64:1 strip at the pixel limit
    Image.fromarray(_ramp(height, width, 65535).astype(np.uint16)).save(path, format="PNG")


def _tiff(mode: str, one_strip: bool = False):
    def write(path: Path, pixels: int) -> None:
        side = math.isqrt(pixels)
        if mode == "F":
            image = Image.fromarray(_ramp(side, side, 1000.0), mode="F")
        elif mode == "I":
            image = Image.fromarray(_ramp(side, side, 1e6).astype(np.int32), mode="I")
        else:
            image = _rgb8(side).convert(mode)
        strip_size = TiffImagePlugin.STRIP_SIZE
        TiffImagePlugin.STRIP_SIZE = 2**31 if one_strip else strip_size  # the whole image
        try:
            image.save(path, format="TIFF", compression="tiff_adobe_deflate")
        finally:
            TiffImagePlugin.STRIP_SIZE = strip_size

    return write


def _png(mode: str):
    def write(path: Path, pixels: int) -> None:
        side = math.isqrt(pixels)
        if mode == "L":
            image = _gray8(side)
        elif mode == "P":
            image = _gray8(side).convert("P")
            image.info["transparency"] = 0
        else:
            image = _rgb8(side).convert(mode)
        image.save(path, format="PNG", **({"transparency": 0} if mode == "P" else {}))

    return write


def _jpeg(mode: str, progressive: bool = False):
    def write(path: Path, pixels: int) -> None:
        side = math.isqrt(pixels)
        image = _gray8(side) if mode == "L" else _rgb8(side).convert(mode)
        image.save(path, format="JPEG", quality=90, progressive=progressive)

    return write


def _simple(format_name: str, **options):
    def write(path: Path, pixels: int) -> None:
        side = math.isqrt(pixels)
        _rgb8(side).save(path, format=format_name, **options)

    return write


def _dicom(kind: str):
    def write(path: Path, pixels: int) -> None:
        side = math.isqrt(pixels)
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence

        frames = 4 if kind == "multiframe" else 1
        rows = side // 2 if frames > 1 else side
        pixels = _ramp(rows, rows, 4095).astype(np.uint16)
        dataset = secondary_capture(rows, rows)
        if frames > 1:
            dataset.NumberOfFrames = frames
        if kind == "window":
            dataset.RescaleSlope, dataset.RescaleIntercept = 1, -1024
            dataset.WindowCenter, dataset.WindowWidth = 0, 1000
        if kind == "voi-lut":
            item = Dataset()
            item.LUTDescriptor = [4096, 0, 8]
            item.add_new(0x00283006, "OW", (np.arange(4096) // 16).astype("<u2").tobytes())
            dataset.VOILUTSequence = Sequence([item])
        dataset.PixelData = np.tile(pixels, (frames, 1)).tobytes()
        dataset.save_as(path, enforce_file_format=True)

    return write


def _dicom_j2k(path: Path, pixels: int) -> None:
    """Lossless JPEG 2000, 12 bits stored."""
    from openjpeg import encode

    side = math.isqrt(pixels)
    values = _ramp(side, side, 4095).astype(np.uint16)
    codestream = encode(values, bits_stored=12, photometric_interpretation=2)
    path.write_bytes(encapsulated_dicom(codestream, side, side, JPEG_2000_LOSSLESS,
                                        bits_allocated=16, bits_stored=12))


def _dicom_j2k_declaring(path: Path, pixels: int) -> None:
    """Under 1 KB: a 64 x 64 JPEG 2000 frame whose codestream and DICOM header say `pixels`."""
    side = math.isqrt(pixels)
    path.write_bytes(encapsulated_dicom(j2k_declaring(side, tile=256), side, side,
                                        JPEG_2000_LOSSLESS))


# name -> (file name, writer, (format, mode, bands, progressive) for Pillow's decode memory;
# None for DICOM, 16-bit samples held twice)
LARGE_SCANS: dict[str, tuple[str, Callable[[Path, int], None], tuple | None]] = {
    "png-gray-8bit": ("a.png", _png("L"), ("PNG", "L", 1, False)),
    "png-rgb": ("a.png", _png("RGB"), ("PNG", "RGB", 3, False)),
    "png-rgba": ("a.png", _png("RGBA"), ("PNG", "RGBA", 4, False)),
    "png-palette-transparent": ("a.png", _png("P"), ("PNG", "P", 1, False)),
    "png-16bit": ("a.png", _png_16bit, ("PNG", "I;16", 1, False)),
    "png-16bit-64to1-strip": ("a.png", _png_16bit_wide, ("PNG", "I;16", 1, False)),
    "tiff-float32": ("a.tif", _tiff("F"), ("TIFF", "F", 1, False)),
    "tiff-int32": ("a.tif", _tiff("I"), ("TIFF", "I", 1, False)),
    "tiff-cmyk": ("a.tif", _tiff("CMYK"), ("TIFF", "CMYK", 4, False)),
    "tiff-rgb-one-strip": ("a.tif", _tiff("RGB", one_strip=True), ("TIFF", "RGB", 3, False)),
    "jpeg-gray": ("a.jpg", _jpeg("L"), ("JPEG", "L", 1, False)),
    "jpeg-rgb": ("a.jpg", _jpeg("RGB"), ("JPEG", "RGB", 3, False)),
    "jpeg-rgb-progressive": ("a.jpg", _jpeg("RGB", progressive=True), ("JPEG", "RGB", 3, True)),
    "jpeg-gray-progressive": ("a.jpg", _jpeg("L", progressive=True), ("JPEG", "L", 1, True)),
    "jpeg-cmyk": ("a.jpg", _jpeg("CMYK"), ("JPEG", "CMYK", 4, False)),
    "bmp-rgb": ("a.bmp", _simple("BMP"), ("BMP", "RGB", 3, False)),
    "webp-rgb-lossless": ("a.webp", _simple("WEBP", lossless=True, method=0),
                          ("WEBP", "RGB", 3, False)),
    "dicom-16bit": ("a.dcm", _dicom("plain"), None),
    "dicom-16bit-rescale-window": ("a.dcm", _dicom("window"), None),
    "dicom-16bit-voi-lut": ("a.dcm", _dicom("voi-lut"), None),
    "dicom-16bit-4-frames": ("a.dcm", _dicom("multiframe"), None),
    "dicom-j2k-12bit": ("a.dcm", _dicom_j2k, None),
    "dicom-j2k-declared-small-file": ("a.dcm", _dicom_j2k_declaring, None),
}


def accepted_pixels(name: str) -> int:
    """The most pixels edge.decode accepts for this case (its pixel and memory limits)."""
    decoder = LARGE_SCANS[name][2]
    if decoder is None:
        return MAX_PIXELS
    return largest_accepted_pixels(pillow_decode_bytes(*decoder))


def main(argv: list[str]) -> None:
    """`python -m lungcnn.benchmarks.large_scans CASE PATH PIXELS`: write one case (in its own
    process, so the process measuring memory never holds a large image itself)."""
    name, path, pixels = argv
    LARGE_SCANS[name][1](Path(path), int(pixels))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
