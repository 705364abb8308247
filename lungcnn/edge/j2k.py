"""A JPEG 2000 DICOM frame decoded at a reduced scale, when a model input needs no more.

A JPEG 2000 codestream holds its image at every power-of-two scale (its wavelet resolution
levels), and openjpeg (through Pillow) can stop before the finest ones. Their decode is
nearly all of the cost of a large frame, and a small hostile file can declare a large frame
(a 742-byte one of 8192 x 8192 pixels): reduced, it costs what its smaller image costs.

Only grayscale frames of up to 16 bits whose JPEG 2000 sign is the DICOM header's are decoded
here; the values are those pydicom gives at full scale (Pillow scales them to 8 or 16 bits
and offsets signed ones, which is undone). Anything else is decoded by pydicom at full scale.
"""

from __future__ import annotations

import io
from typing import BinaryIO

import numpy as np
from PIL import Image

from lungcnn.edge.errors import ScanError, first_line
from lungcnn.edge.headers import J2KHeader

_PILLOW_BITS = {"L": 8, "I;16": 16}  # Pillow's mode for a gray JPEG 2000 -> its bits


def reduced_levels(header: J2KHeader | None, dataset, min_side: int | None) -> int:
    """How many of the finest resolution levels can be left undecoded with the shorter side
    still at least `min_side` (0: decode at full scale, by pydicom)."""
    if header is None or not min_side or not _decodable(header, dataset):
        return 0
    side, levels = min(header.rows, header.columns), 0
    while levels < header.levels and -(-side // 2 ** (levels + 1)) >= min_side:
        levels += 1
    return levels


def _decodable(header: J2KHeader, dataset) -> bool:
    return (header.components == 1 and header.precision <= 16
            and header.signed == (int(dataset.get("PixelRepresentation", 0) or 0) == 1))


def reduced_size(rows: int, columns: int, levels: int) -> tuple[int, int]:
    """(rows, columns) of a frame decoded `levels` levels short of full scale."""
    return -(-rows // 2**levels), -(-columns // 2**levels)


def read_reduced(handle: BinaryIO, pixel_data_at: int, dataset, header: J2KHeader,
                 levels: int) -> np.ndarray:
    """The first frame (its Pixel Data element at `pixel_data_at`), `levels` levels short of
    full scale, as int32 stored values. Raises ScanError."""
    from pydicom.encaps import get_frame

    handle.seek(pixel_data_at + 12)  # past the element's tag, VR and undefined length
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    try:
        codestream = get_frame(handle, 0, number_of_frames=frames)
        with Image.open(io.BytesIO(codestream), formats=["JPEG2000"]) as image:
            image.reduce = levels
            image.load()
            bits, values = _PILLOW_BITS[image.mode], np.asarray(image, dtype=np.int32)
    except Exception as error:  # openjpeg and pydicom raise many types on bad data
        raise ScanError(f"unreadable DICOM pixel data ({first_line(error)})") from None
    values >>= bits - header.precision
    if header.signed:
        values -= 1 << (header.precision - 1)
    return values
