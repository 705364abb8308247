"""Sizes a file declares, checked before a decoder trusts them: the cost of a decode must
follow from the image's pixels, not from a count or a length a small file can inflate.

- JPEG: the number of scans, for its size (a progressive decode passes over the whole image
  once per scan), and the file's size (its markers are read in memory);
- PNG: the length of every chunk but the image data (Pillow reads a chunk whole);
- TIFF: the strip and tile tables and every tag's values (Pillow holds them as Python objects);
- WebP: the file itself (Pillow reads it whole);
- a compressed DICOM frame (JPEG, JPEG-LS, JPEG 2000): the codestream's own size and tiles,
  which must agree with the DICOM header before anything is decoded.
"""

from __future__ import annotations

import io
import os
import re
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from lungcnn.edge.errors import ScanError
from lungcnn.edge.pixels import MAX_PIXELS

MAX_JPEG_SCANS = 64  # a progressive JPEG from any usual encoder has 6 to 20
# Scans times pixels: libjpeg's own progression (10 scans) at the pixel limit, no more.
MAX_SCAN_PIXELS = 10 * MAX_PIXELS
MAX_CHUNK_BYTES = 16 * 2**20  # a PNG chunk other than image data, a TIFF tag's values
MAX_STRIPS = 65536  # strips or tiles in a TIFF's first image
MAX_TIFF_TAGS = 4096  # tags in its directory (a usual one has 10 to 30)
MAX_WEBP_BYTES = 64 * 2**20
MAX_JPEG_BYTES = 128 * 2**20  # read whole for its markers, before it is decoded
MAX_J2K_TILES = 4096
_CODESTREAM_HEAD = 1 << 16  # bytes of a compressed DICOM frame read for its header
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_DATA_CHUNKS = frozenset({b"IDAT", b"fdAT"})  # streamed to the decoder, never held whole
# Magic -> byte order, offset and entry-count formats, entry size (BigTIFF: 8-byte offsets).
_TIFF_MAGICS = {b"II*\0": ("<", "I", "H", 12), b"MM\0*": (">", "I", "H", 12),
                b"II+\0": ("<", "Q", "Q", 20), b"MM\0+": (">", "Q", "Q", 20)}
_TIFF_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
                    13: 4, 16: 8, 17: 8, 18: 8}
_TIFF_TABLES = frozenset({273, 279, 324, 325})  # strip / tile offsets and byte counts
# A marker: FF then anything but a stuffed zero, a restart marker or fill (entropy-coded data
# holds only those).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}  # F7: JPEG-LS


def check_declared_sizes(handle: BinaryIO, head: bytes) -> None:
    """Refuse (ScanError) a file whose header or tables declare a cost out of proportion to
    its pixels; `head` is its first bytes. Leaves `handle` at the start."""
    try:
        if head.startswith(b"\xff\xd8\xff"):
            _check_jpeg_scans(handle)
        elif head.startswith(_PNG_MAGIC):
            _check_png_chunks(handle)
        elif head[:4] in _TIFF_MAGICS:
            _check_tiff_tables(handle, _TIFF_MAGICS[head[:4]])
        elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            _check_webp_size(handle)
    finally:
        handle.seek(0)


def _check_jpeg_scans(handle: BinaryIO) -> None:
    """Walks the markers up to the end of the image (EOI), segment by segment, as libjpeg
    reads them: what an APP segment holds (an EXIF thumbnail) and what follows the image (a
    second picture) is not counted."""
    with _contents(handle) as data:
        (rows, columns), scans, at = (MAX_PIXELS, 1), 0, 2
        while (found := _JPEG_MARKER.search(data, at)) is not None:
            at = found.start()
            marker = data[at + 1]
            if marker == 0xD9 or at + 4 > len(data):  # the end of the image
                return
            if marker in _SOF_MARKERS and at + 9 <= len(data):
                rows, columns = struct.unpack(">HH", data[at + 5: at + 9])
            elif marker == 0xDA:
                scans += 1
                limit = max(1, min(MAX_JPEG_SCANS, MAX_SCAN_PIXELS // max(1, rows * columns)))
                if scans > limit:
                    raise ScanError(f"JPEG of {columns}x{rows} pixels with more than {limit} "
                                    "scans (each scan is a pass over the whole image); "
                                    "re-save it")
            at += 2 + struct.unpack(">H", data[at + 2: at + 4])[0]


@contextmanager
def _contents(handle: BinaryIO):
    """The whole file: the buffer of bytes, or a file read at most MAX_JPEG_BYTES (not a
    memory map: a file cut short while mapped would crash the process)."""
    if isinstance(handle, io.BytesIO):
        with handle.getbuffer() as view:
            yield view
        return
    size = handle.seek(0, os.SEEK_END)
    if size > MAX_JPEG_BYTES:
        raise ScanError(f"JPEG file of {size:,} bytes, over the {MAX_JPEG_BYTES:,}-byte limit")
    handle.seek(0)
    yield handle.read(MAX_JPEG_BYTES)


def _check_png_chunks(handle: BinaryIO) -> None:
    handle.seek(len(_PNG_MAGIC))
    while len(header := handle.read(8)) == 8:
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            return
        if length > MAX_CHUNK_BYTES and kind not in _PNG_DATA_CHUNKS:
            raise ScanError(f"PNG chunk {_kind(kind)} of {length:,} bytes, over the "
                            f"{MAX_CHUNK_BYTES:,}-byte limit for anything but image data")
        handle.seek(length + 4, os.SEEK_CUR)  # the data and its CRC


def _kind(kind: bytes) -> str:
    return repr(kind.decode("latin-1"))


def _check_tiff_tables(handle: BinaryIO, layout: tuple[str, str, str, int]) -> None:
    """The first image's directory (the one decoded): each tag's values and the strip table.
    `layout`: the byte order, the offset and entry-count formats, and the entry size (a
    BigTIFF's are wider)."""
    order, offset_format, count_format, entry_size = layout
    handle.seek(4 if offset_format == "I" else 8)
    (offset,) = struct.unpack(order + offset_format, _exactly(handle, struct.calcsize(
        offset_format)))
    handle.seek(offset)
    (entries,) = struct.unpack(order + count_format, _exactly(handle, struct.calcsize(
        count_format)))
    if entries > MAX_TIFF_TAGS:
        raise ScanError(f"TIFF directory of {entries:,} tags, over the limit of "
                        f"{MAX_TIFF_TAGS:,}")
    table = _exactly(handle, entry_size * entries)
    for at in range(0, len(table), entry_size):
        tag, kind, count = struct.unpack(order + "HH" + offset_format, table[
            at: at + 4 + struct.calcsize(offset_format)])
        if tag in _TIFF_TABLES and count > MAX_STRIPS:
            raise ScanError(f"TIFF with {count:,} strips or tiles, over the limit of "
                            f"{MAX_STRIPS:,}; re-save it with larger strips")
        if count * _TIFF_TYPE_BYTES.get(kind, 1) > MAX_CHUNK_BYTES:
            raise ScanError(f"TIFF tag {tag} holds {count:,} values, over the "
                            f"{MAX_CHUNK_BYTES:,}-byte limit")


def _exactly(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise ScanError("corrupt or truncated image (TIFF directory cut short)")
    return data


def _check_webp_size(handle: BinaryIO) -> None:
    size = handle.seek(0, os.SEEK_END)
    if size > MAX_WEBP_BYTES:
        raise ScanError(f"WebP file of {size:,} bytes, over the {MAX_WEBP_BYTES:,}-byte limit "
                        "(a WebP file is read whole)")


def check_first_fragment(handle: BinaryIO, dataset) -> J2KHeader | None:
    """A compressed frame's codestream must declare the header's size before it is decoded
    (the decoder would allocate whatever the codestream says). `handle` is at the Pixel
    Data element of a pydicom `dataset` read up to it. Returns a JPEG 2000 frame's header."""
    element = handle.read(12)  # tag, VR, 2 reserved bytes, length
    if len(element) < 12 or element[:4] != b"\xe0\x7f\x10\x00":
        return None  # no pixel data: the pixel reader says so
    if struct.unpack("<I", element[8:12])[0] != 0xFFFFFFFF:
        return None  # native pixels: their size is the header's
    offsets = handle.read(8)  # the basic offset table item
    handle.seek(struct.unpack("<I", offsets[4:8])[0] if len(offsets) == 8 else 0, io.SEEK_CUR)
    item = handle.read(8)
    if len(item) < 8 or item[:4] != b"\xfe\xff\x00\xe0":
        raise ScanError("compressed DICOM pixel data without a first frame")
    head = handle.read(min(struct.unpack("<I", item[4:8])[0], _CODESTREAM_HEAD))
    return _check_codestream(head, int(dataset.Rows), int(dataset.Columns),
                             int(dataset.get("SamplesPerPixel", 1) or 1))


def _check_codestream(head: bytes, rows: int, columns: int, samples: int) -> J2KHeader | None:
    """The first bytes of a compressed DICOM frame (JPEG, JPEG-LS or JPEG 2000) must declare
    the DICOM header's size and samples; a JPEG 2000 one at most MAX_J2K_TILES tiles. Returns
    a JPEG 2000 frame's header, None for a JPEG one."""
    j2k = None
    if head.startswith(b"\xff\xd8"):
        size, components = _jpeg_frame(head)
    else:
        j2k = j2k_header(head)
        size, components = (j2k.rows, j2k.columns), j2k.components
    if size != (rows, columns) or components != samples:
        raise ScanError(f"compressed DICOM frame of {size[1]}x{size[0]} pixels and "
                        f"{components} samples, but the header says {columns}x{rows} and "
                        f"{samples}")
    if j2k is not None and j2k.tiles > MAX_J2K_TILES:
        raise ScanError(f"JPEG 2000 frame in {j2k.tiles:,} tiles, over the limit of "
                        f"{MAX_J2K_TILES:,}")
    return j2k


def _jpeg_frame(head: bytes) -> tuple[tuple[int, int], int]:
    """(rows, columns) and components of a JPEG's start-of-frame segment."""
    at = 2
    while at + 4 <= len(head) and head[at] == 0xFF:
        marker, (length,) = head[at + 1], struct.unpack(">H", head[at + 2: at + 4])
        if marker in _SOF_MARKERS and at + 10 <= len(head):
            rows, columns, components = struct.unpack(">HHB", head[at + 5: at + 10])
            return (rows, columns), components
        at += 2 + length
    raise ScanError("JPEG without a frame header in its first bytes")


@dataclass(frozen=True)
class J2KHeader:
    """What a JPEG 2000 codestream's main header declares (SIZ, COD and COC)."""

    rows: int
    columns: int
    components: int
    tiles: int
    precision: int  # bits per sample of the first component
    signed: bool
    levels: int  # wavelet decomposition levels, the fewest of any component (0: unknown)


def j2k_header(head: bytes) -> J2KHeader:
    """The main header in the first bytes of a JPEG 2000 codestream (or JP2 file)."""
    start = head.find(b"\xff\x4f\xff\x51")  # SOC then SIZ, after a JP2 header if any
    if start < 0:
        raise ScanError("compressed DICOM frame that is neither JPEG nor JPEG 2000")
    siz = head[start + 2:]
    if len(siz) < 41:
        raise ScanError("compressed DICOM frame with a JPEG 2000 header cut short")
    x, y, x0, y0, tile_x, tile_y, tile_x0, tile_y0 = struct.unpack(">8I", siz[6:38])
    components, depth = struct.unpack(">HB", siz[38:41])
    if not (x0 < x and y0 < y and tile_x0 <= x0 and tile_y0 <= y0 and tile_x and tile_y):
        raise ScanError("compressed DICOM frame with an invalid JPEG 2000 size")
    tiles = -(-(x - tile_x0) // tile_x) * -(-(y - tile_y0) // tile_y)
    levels = _j2k_levels(siz, components)
    return J2KHeader(y - y0, x - x0, components, tiles, (depth & 0x7F) + 1,
                     bool(depth & 0x80), levels)


def _j2k_levels(main: bytes, components: int) -> int:
    """The fewest decomposition levels its COD and COC segments give (0 when not found in
    `main`, the main header from its SIZ on)."""
    levels, at = [], 0
    while at + 4 <= len(main) and main[at] == 0xFF and main[at + 1] != 0x90:  # up to SOT
        marker, (length,) = main[at + 1], struct.unpack(">H", main[at + 2: at + 4])
        if marker == 0x52 and at + 10 <= len(main):  # COD: Scod, SGcod (4 bytes), levels
            levels.append(main[at + 9])
        elif marker == 0x53:  # COC: component (1 or 2 bytes), Scoc, levels
            levels_at = at + (6 if components < 257 else 7)
            levels.extend(main[levels_at: levels_at + 1])
        at += 2 + length
    return min(levels) if levels else 0
