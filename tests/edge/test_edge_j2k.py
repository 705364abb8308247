"""JPEG 2000 DICOM frames decoded at the reduced scale a model input needs (edge/j2k.py): the
stored values are pydicom's at full scale, a large frame costs what its reduced image costs,
and a small file declaring the pixel limit is cheap where it used to cost seconds."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

import bounded_corpus as corpus
from lungcnn.edge.decode import ScanError, decode_scan
from lungcnn.edge.headers import J2KHeader, check_first_fragment, j2k_header
from lungcnn.edge.j2k import read_reduced, reduced_levels

pydicom = pytest.importorskip("pydicom")
openjpeg = pytest.importorskip("openjpeg")
pytest.importorskip("pylibjpeg")
from pydicom.pixels import pixel_array  # noqa: E402

JPEG_2000 = "1.2.840.10008.1.2.4.91"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"


def j2k_dicom(values: np.ndarray, bits: int, signed: bool = False,
              bits_stored: int | None = None) -> bytes:
    """A lossless JPEG 2000 DICOM of `values`, `bits` per sample in the codestream and
    `bits_stored` (default the same) in the DICOM header."""
    codestream = openjpeg.encode(values, bits_stored=bits, photometric_interpretation=2)
    return corpus.encapsulated_dicom(codestream, *values.shape, JPEG_2000_LOSSLESS,
                                     bits_allocated=8 * values.dtype.itemsize,
                                     bits_stored=bits_stored or bits, signed=signed)


def stored_values(data: bytes, levels: int) -> np.ndarray:
    """edge.j2k's stored values of the first frame, `levels` short of full scale."""
    handle = io.BytesIO(data)
    dataset = pydicom.dcmread(handle, stop_before_pixels=True)
    at = handle.tell()
    header = check_first_fragment(handle, dataset)
    return read_reduced(handle, at, dataset, header, levels)


CASES = [(np.uint8, 8, False, None), (np.uint8, 6, False, None), (np.uint16, 12, False, None),
         (np.uint16, 16, False, None), (np.int16, 12, True, None), (np.int16, 16, True, None),
         (np.uint16, 10, False, 12)]


@pytest.mark.parametrize("dtype, bits, signed, bits_stored", CASES)
def test_the_values_at_full_scale_are_pydicoms(dtype, bits, signed, bits_stored):
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1)) if signed else (0, 2**bits)
    values = np.random.default_rng(bits).integers(low, high, (96, 80)).astype(dtype)
    data = j2k_dicom(values, bits, signed, bits_stored)
    expected = pixel_array(io.BytesIO(data), index=0)
    np.testing.assert_array_equal(stored_values(data, 0), expected)
    np.testing.assert_array_equal(expected, values)


def test_a_large_frame_is_decoded_at_the_scale_the_contract_needs():
    """1024 px, model inputs from 200 px: two levels short (256 px), and the same picture as
    the full decode box-reduced (within the wavelet's rounding)."""
    ramp = np.add.outer(np.arange(1024), np.arange(1024)).astype(np.uint16) * 2
    data = j2k_dicom(ramp, 12)
    reduced, full = decode_scan(data, min_side=200).gray, decode_scan(data).gray
    assert reduced.shape == (256, 256) and full.shape == (1024, 1024)
    box = np.asarray(Image.fromarray(full).reduce(4), dtype=np.int16)
    assert np.abs(box - reduced).max() <= 2


def test_a_small_file_declaring_the_pixel_limit_is_cheap_at_a_reduced_scale():
    """742 bytes declaring 8192 x 8192: decoded four levels short (512 px) for a contract
    that needs 320; at full scale it is refused by the memory budget, before decoding."""
    data = corpus.encapsulated_dicom(corpus.j2k_declaring(8192, tile=256), 8192, 8192,
                                     JPEG_2000)
    assert len(data) < 1024
    assert decode_scan(data, min_side=320).gray.shape == (512, 512)
    with pytest.raises(ScanError, match="8192x8192 pixels .DICOM. needs about 384 MiB"):
        decode_scan(data)


def header(levels: int = 5, signed: bool = False, components: int = 1) -> J2KHeader:
    return J2KHeader(4000, 3000, components, 1, 12, signed, levels)


@pytest.mark.parametrize("j2k, min_side, expected", [
    (header(), None, 0), (header(), 3000, 0), (header(), 1500, 1), (header(), 320, 3),
    (header(levels=2), 320, 2), (header(levels=0), 320, 0),
    (header(signed=True), 320, 0), (header(components=3), 320, 0), (None, 320, 0)])
def test_levels_left_undecoded(j2k, min_side, expected):
    """Never below min_side, never more than the codestream has; colour, a sign that is not
    the header's and a frame that is not JPEG 2000 are left to pydicom at full scale."""
    dataset = pydicom.Dataset()
    dataset.PixelRepresentation = 0
    assert reduced_levels(j2k, dataset, min_side) == expected


def test_the_fewest_levels_of_cod_and_coc_are_read():
    codestream = bytearray(corpus.j2k_declaring(64))
    at = codestream.index(b"\xff\x52")
    coc = b"\xff\x53" + struct.pack(">H", 9) + bytes([0, 0, 2, 4, 4, 0, 1])
    with_coc = bytes(codestream[:at] + coc + codestream[at:])
    assert j2k_header(bytes(codestream)).levels == 5
    assert j2k_header(with_coc).levels == 2
    assert j2k_header(with_coc).precision == 8 and not j2k_header(with_coc).signed
