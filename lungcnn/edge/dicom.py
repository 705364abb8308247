"""DICOM -> 2-D uint8 grayscale: the modality LUT (or rescale), then the VOI LUT (or window),
applied per DICOM PS3.3 C.11 in int64/float64 tiles, so no lookup can overflow and no
full-size float copy is made. Needs pydicom (`pip install 'lungcnn[dicom]'`, which also brings
the JPEG, JPEG-LS and JPEG 2000 decoders); only the first frame of a multi-frame file is read.
"""

from __future__ import annotations

import importlib
import io
import struct
import zlib
from typing import BinaryIO

import numpy as np

from lungcnn.edge.errors import ScanError, first_line
from lungcnn.edge.headers import check_first_fragment
from lungcnn.edge.j2k import read_reduced, reduced_levels, reduced_size
from lungcnn.edge.pixels import (
    DECODE_BUDGET,
    DECODE_MEMORY,
    TILE_PIXELS,
    check_decode_memory,
    check_pixel_limit,
    real_range,
    scale_to_uint8,
)
from lungcnn.edge.quiet import decoder_warnings_silenced

_INSTALL = "pip install 'lungcnn[dicom]'"
_DEFER_BYTES = 1 << 20  # larger elements (a private blob, the pixels) are not read whole
_DEFLATED = "1.2.840.10008.1.2.1.99"
_PREAMBLE = 132  # 128 bytes, then "DICM"
_INFLATED_LIMIT = DECODE_BUDGET // 2  # a deflated dataset holding the largest accepted frame
_LUT_DATA = 0x00283006
# Transfer syntax UID -> (what it is, the pip package whose decoder it needs, its module).
_JPEG = ("JPEG", "pylibjpeg-libjpeg", "libjpeg")
_JPEG_LS = ("JPEG-LS", "pylibjpeg-libjpeg", "libjpeg")
_JPEG_2000 = ("JPEG 2000", "pylibjpeg-openjpeg", "openjpeg")
_PLUGINS = {
    **dict.fromkeys(("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
                     "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"), _JPEG),
    **dict.fromkeys(("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"), _JPEG_LS),
    **dict.fromkeys(("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
                     "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
                     "1.2.840.10008.1.2.4.203"), _JPEG_2000),
}


def read_dicom(handle: BinaryIO, min_side: int | None = None) -> np.ndarray:
    """The first frame of a DICOM file as 2-D uint8 grayscale; a JPEG 2000 one whose shorter
    side is at least twice `min_side` at a reduced scale (`edge.j2k`). Raises ScanError."""
    try:
        import pydicom
        from pydicom.pixels import pixel_array
    except ImportError:
        raise ScanError(f"DICOM file, but pydicom is not installed: {_INSTALL}") from None
    try:
        with decoder_warnings_silenced:
            handle = _inflated(handle)
            dataset = pydicom.dcmread(handle, stop_before_pixels=True, defer_size=_DEFER_BYTES)
            pixel_data_at = handle.tell()
            j2k = check_first_fragment(handle, dataset)
            levels = reduced_levels(j2k if _is_j2k(dataset) else None, dataset, min_side)
            handle.seek(0)
            with DECODE_MEMORY.held(_decode_bytes(dataset, levels)):
                if levels:
                    pixels = read_reduced(handle, pixel_data_at, dataset, j2k, levels)
                else:
                    try:
                        pixels = pixel_array(handle, index=0)
                    except Exception as error:
                        raise ScanError(_decoder_problem(dataset, error)) from None
                return dicom_to_gray(pixels, dataset)
    except ScanError:
        raise
    except MemoryError:
        raise ScanError("not enough memory to decode this DICOM file") from None
    except Exception as error:  # pydicom raises many types for bad files
        raise ScanError(f"unreadable DICOM ({first_line(error)})") from None


def _inflated(handle: BinaryIO) -> BinaryIO:
    """A deflated file as an uncompressed one in memory, inflated only up to _INFLATED_LIMIT
    (pydicom would inflate it whole, and its pixel reader does not read it); any other file
    as it is."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    handle.seek(_PREAMBLE)
    group = handle.read(12)  # (0002,0000) UL: the length of the rest of the meta group
    meta_end = _PREAMBLE + 12 + struct.unpack("<I", group[8:12])[0] if len(group) == 12 else 0
    handle.seek(_PREAMBLE)
    meta_bytes = handle.read(max(0, meta_end - _PREAMBLE))
    if _DEFLATED.encode() not in meta_bytes:
        handle.seek(0)
        return handle
    meta = read_dataset(io.BytesIO(meta_bytes), is_implicit_VR=False, is_little_endian=True)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = DicomBytesIO()
    out.write(bytes(128) + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=False)
    out.write(_inflate(handle))
    out.seek(0)
    return out


def _inflate(handle: BinaryIO) -> bytes:
    inflater, body = zlib.decompressobj(-zlib.MAX_WBITS), bytearray()
    while chunk := handle.read(1 << 20):
        body += inflater.decompress(chunk, _INFLATED_LIMIT + 1 - len(body))
        if len(body) > _INFLATED_LIMIT:
            raise ScanError(f"deflated DICOM inflates to over {_INFLATED_LIMIT // 2**20} MiB, "
                            "more than the largest scan accepted")
    return bytes(body)


def _decode_bytes(dataset, levels: int = 0) -> int:
    """What decoding the first frame (`levels` short of full scale) will hold (raises
    ScanError when over a limit)."""
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    check_pixel_limit((columns, rows), frames)
    rows, columns = reduced_size(rows, columns, levels)
    return check_decode_memory((columns, rows), decode_bytes_per_pixel(dataset), "DICOM")


def decode_bytes_per_pixel(dataset) -> int:
    """What decoding one frame holds per pixel: the stored samples twice (the file's bytes and
    the array), twice more for a compressed one (the decoder's buffer) or, for JPEG 2000,
    openjpeg's 32-bit sample, plus float working space for a colour one's conversion to RGB."""
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    sample_bytes = max(1, -(-int(dataset.get("BitsAllocated", 16) or 16) // 8))
    held = samples * sample_bytes * 2
    if _is_j2k(dataset):
        held += 4 * samples
    elif _is_compressed(_syntax(dataset)):
        held *= 2
    return held + (8 * samples if samples > 1 else 0)


def _syntax(dataset) -> str:
    return str(getattr(dataset.get("file_meta"), "TransferSyntaxUID", "") or "")


def _is_j2k(dataset) -> bool:
    return _PLUGINS.get(_syntax(dataset)) == _JPEG_2000


def _decoder_problem(dataset, error: Exception) -> str:
    """The reason pixel data did not decode: a missing decoder plugin is named."""
    syntax = _syntax(dataset)
    kind, package, module = _PLUGINS.get(syntax, (None, None, None))
    if module is not None and not (_importable("pylibjpeg") and _importable(module)):
        return (f"DICOM compressed as {kind} needs the {package} decoder: {_INSTALL} "
                f"(or pip install pylibjpeg {package})")
    if kind is None and _is_compressed(syntax):
        return (f"no decoder installed for DICOM compressed as {_syntax_name(syntax)}: "
                "python-gdcm may decode it (pip install python-gdcm)")
    return f"unreadable DICOM pixel data ({first_line(error)})"


def _is_compressed(syntax: str) -> bool:
    from pydicom.uid import UID

    try:
        return UID(syntax).is_compressed
    except ValueError:  # not a transfer syntax pydicom knows
        return bool(syntax)


def _syntax_name(syntax: str) -> str:
    from pydicom.uid import UID

    name = UID(syntax).name
    return name if name != syntax else f"transfer syntax {syntax}"


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except (ImportError, ValueError):
        return False
    return True


def dicom_to_gray(pixels: np.ndarray, dataset) -> np.ndarray:
    """A decoded frame (rows x columns, or x 3 for colour) through the dataset's LUTs."""
    transform, value_range = _transform(dataset)
    height, width = pixels.shape[:2]
    rows = max(1, TILE_PIXELS // max(1, width))
    boxes = [(top, min(top + rows, height)) for top in range(0, height, rows)]
    if value_range is None:
        value_range = real_range(transform(pixels[top:bottom]) for top, bottom in boxes)
    gray = np.empty((height, width), dtype=np.uint8)
    for top, bottom in boxes:
        gray[top:bottom] = scale_to_uint8(transform(pixels[top:bottom]), value_range)
    if str(dataset.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        gray = 255 - gray
    return gray


def _transform(dataset):
    """(tile -> output values, the output range or None for the values' real range)."""
    modality, modality_bits = _modality(dataset)
    voi_lut = _lut(dataset.VOILUTSequence[0], dataset) if dataset.get("VOILUTSequence") else None
    if voi_lut is not None:
        return (lambda tile: voi_lut[0](modality(tile))), (0.0, float(2 ** voi_lut[1] - 1))
    if dataset.get("WindowCenter") is None or dataset.get("WindowWidth") is None:
        return modality, None
    from pydicom.pixels import apply_windowing

    window_range = _window_input_range(dataset, modality_bits)
    return (lambda tile: apply_windowing(modality(tile), dataset)), window_range


def _modality(dataset):
    """(tile -> modality output values, the modality LUT's bits or None)."""
    if dataset.get("ModalityLUTSequence"):
        lookup, bits = _lut(dataset.ModalityLUTSequence[0], dataset)
        return lookup, bits
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        slope, intercept = float(slope), float(intercept)
        return (lambda tile: np.asarray(tile, dtype=np.float64) * slope + intercept), None
    return (lambda tile: np.asarray(tile, dtype=np.float64)), None


def _lut(item, dataset):
    """(tile -> looked-up values as int64, bits per entry) for a modality or VOI LUT item:
    values below the first mapped one take the first entry, above the last the last."""
    entries, first, bits = (int(value) for value in item.LUTDescriptor)
    entries = entries % 65536 or 65536  # 0 means 65536 entries
    if int(dataset.get("PixelRepresentation", 0)) == 1 and first >= 32768:
        first -= 65536  # a signed first mapped value read as unsigned
    bits = bits % 65536
    if not 1 <= bits <= 16:
        raise ScanError(f"DICOM LUT of {bits} bits per entry (must be 8 to 16)")
    table = _lut_data(item, entries, bits, dataset)

    def lookup(tile: np.ndarray) -> np.ndarray:
        index = np.floor(tile) if np.asarray(tile).dtype.kind == "f" else tile
        index = np.clip(np.asarray(index, dtype=np.int64) - first, 0, entries - 1)
        return table[index]

    return lookup, bits


def _lut_data(item, entries: int, bits: int, dataset) -> np.ndarray:
    raw = item.get_item(_LUT_DATA)  # its declared length, before a deferred value is read
    if raw is not None and raw.length > 2 * entries + 2:
        raise ScanError(f"DICOM LUT data of {raw.length:,} bytes, its descriptor says "
                        f"{entries} entries")
    value = item.LUTData
    if isinstance(value, (bytes, bytearray)):
        if bits == 8 and len(value) in (entries, entries + 1):  # 8-bit entries, one per byte
            table = np.frombuffer(value[:entries], dtype=np.uint8)
        else:  # one entry per 16-bit word (the usual encoding, whatever the bits)
            little = getattr(dataset, "original_encoding", (None, True))[1] is not False
            table = np.frombuffer(value[: len(value) // 2 * 2], dtype="<u2" if little else ">u2")
    else:
        table = np.atleast_1d(np.asarray(value, dtype=np.int64))
    if table.size < entries:
        raise ScanError(f"DICOM LUT data holds {table.size} entries, "
                        f"its descriptor says {entries}")
    return np.asarray(table[:entries], dtype=np.int64)


def _window_input_range(dataset, modality_bits: int | None) -> tuple[float, float]:
    """The range a window maps onto (its output is scaled from it to 0-255): the stored bit
    depth after rescale, or the modality LUT's, as pydicom's apply_windowing uses."""
    if modality_bits is not None:
        return 0.0, float(2**modality_bits - 1)
    bits = int(dataset.BitsStored)
    if int(dataset.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2**bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return low, high
