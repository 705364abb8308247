"""Small files that used to cost gigabytes or minutes to decode (issue 22, items 1-6), built
at test time: each declares far more than it holds. Sparse files take no disk space."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from lungcnn.benchmarks.synthetic_dicom import (  # noqa: F401  (the tests use them from here)
    dicom_bytes,
    encapsulated_dicom,
    j2k_declaring,
)

SPARSE_BYTES = 1_500_000_000


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data)))


def png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def sparse_png_chunk(path: Path) -> Path:
    """A 16x16 PNG with a private chunk declared (and sparsely stored) at 1.5 GB."""
    ihdr = struct.pack(">IIBBBBB", 16, 16, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" + bytes(16) * 16)
    with path.open("wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr))
        out.write(struct.pack(">I", SPARSE_BYTES) + b"prIv")
        out.seek(SPARSE_BYTES + 4, io.SEEK_CUR)
        out.write(png_chunk(b"IDAT", pixels) + png_chunk(b"IEND", b""))
    return path


def sparse_webp(path: Path) -> Path:
    """A RIFF/WEBP header declaring a 1.5 GB file, stored sparsely."""
    with path.open("wb") as out:
        out.write(b"RIFF" + struct.pack("<I", SPARSE_BYTES) + b"WEBPVP8L"
                  + struct.pack("<I", SPARSE_BYTES - 12))
        out.seek(SPARSE_BYTES - 20, io.SEEK_CUR)
        out.write(b"\0")
    return path


def jpeg_bytes(side: int = 64, progressive: bool = False) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (side, side), 128).save(buffer, "JPEG", progressive=progressive)
    return buffer.getvalue()


def progressive_jpeg_with_scans(extra_scans: int, side: int = 64) -> bytes:
    """A progressive JPEG with its last scan repeated (libjpeg decodes every one), its frame
    header saying `side` x `side` (only the first 64 x 64 pixels are coded)."""
    data = bytearray(jpeg_bytes(progressive=True))
    at = data.index(b"\xff\xc2")
    data[at + 5: at + 9] = struct.pack(">HH", side, side)
    last = data.rfind(b"\xff\xda")
    return bytes(data[:-2] + data[last:-2] * extra_scans + b"\xff\xd9")


def tiff_with_strips(width: int, height: int, big: bool = False) -> bytes:
    """An uncompressed 8-bit TIFF (a BigTIFF when `big`: 8-byte counts and offsets) with one
    strip per row, every strip the same bytes."""
    word, long_type, entry = ("Q", 16, 20) if big else ("I", 4, 12)
    size = struct.calcsize(word)
    entries = [(256, long_type, 1, width), (257, long_type, 1, height), (258, 3, 1, 8),
               (259, 3, 1, 1), (262, 3, 1, 1), (278, long_type, 1, 1)]
    directory = 16 if big else 8
    tables = directory + (8 if big else 2) + entry * (len(entries) + 2) + size
    row = tables + 2 * size * height
    offsets = struct.pack(f"<{height}{word}", *([row] * height))
    counts = struct.pack(f"<{height}{word}", *([width] * height))
    entries += [(273, long_type, height, tables), (279, long_type, height,
                                                   tables + size * height)]
    entries.sort()
    ifd = struct.pack("<Q" if big else "<H", len(entries)) + b"".join(
        struct.pack(f"<HH{word}{word}", *fields) for fields in entries) + struct.pack(
        f"<{word}", 0)
    header = (b"II+\0" + struct.pack("<HHQ", 8, 0, directory) if big
              else b"II*\0" + struct.pack("<I", directory))
    return header + ifd + offsets + counts + bytes(width)


def jpeg_declaring(rows: int, columns: int) -> bytes:
    """A 16x16 baseline JPEG whose frame header says rows x columns."""
    data = bytearray(jpeg_bytes(16))
    at = data.index(b"\xff\xc0")
    data[at + 5: at + 9] = struct.pack(">HH", rows, columns)
    return bytes(data)


def sparse_private_dicom(path: Path) -> Path:
    """A valid 64x64 DICOM with a private OB element declared (and sparsely stored) at
    1.5 GB before its pixels."""
    from lungcnn.benchmarks.synthetic_dicom import secondary_capture

    dataset = secondary_capture(64, 64)
    dataset.add_new(0x00091001, "OB", b"ab")
    dataset.PixelData = bytes(64 * 64 * 2)
    data = dicom_bytes(dataset)
    element = struct.pack("<HH", 9, 0x1001) + b"OB\0\0" + struct.pack("<I", 2) + b"ab"
    at = data.index(element)
    with path.open("wb") as out:
        out.write(data[:at] + element[:8] + struct.pack("<I", SPARSE_BYTES))
        out.seek(SPARSE_BYTES, io.SEEK_CUR)
        out.write(data[at + len(element):])
    return path


def deflated_dicom(pixels: np.ndarray, private_bytes: int = 0) -> bytes:
    """A deflated explicit VR little endian DICOM of `pixels` (uint16), followed by a private
    OB element of `private_bytes` zeros (deflated as it is made: never whole in memory)."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from lungcnn.benchmarks.synthetic_dicom import secondary_capture

    dataset = secondary_capture(*pixels.shape)
    dataset.PixelData = pixels.astype("<u2").tobytes()
    plain = dicom_bytes(dataset)
    body_at = 144 + struct.unpack("<I", plain[140:144])[0]
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    deflated = dicom_bytes(dataset)
    meta = deflated[: 144 + struct.unpack("<I", deflated[140:144])[0]]
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = [deflater.compress(plain[body_at:])]
    if private_bytes:
        body.append(deflater.compress(struct.pack("<HH", 0x7FE1, 0x1001) + b"OB\0\0"
                                      + struct.pack("<I", private_bytes)))
        zeros = bytes(1 << 20)
        body.extend(deflater.compress(zeros) for _ in range(private_bytes >> 20))
    return meta + b"".join(body) + deflater.flush()
