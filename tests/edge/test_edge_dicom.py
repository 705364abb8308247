"""DICOM pixels through modality and VOI LUTs of 8 and 16 bits, checked against pixels worked
out by hand from the standard (PS3.3 C.11); compressed transfer syntaxes, and the decoder a
missing one needs named in the error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lungcnn.edge.decode import ScanError, read_grayscale

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom.uid import (  # noqa: E402
    JPEG2000Lossless,
    JPEGLSLossless,
)

from lungcnn.benchmarks.synthetic_dicom import secondary_capture  # noqa: E402

RAMP_12BIT = np.arange(4096, dtype=np.uint16).reshape(64, 64)  # every 12-bit value once


def _dataset(pixels: np.ndarray, bits_stored: int = 12, signed: bool = False) -> Dataset:
    dataset = secondary_capture(*pixels.shape, bits_allocated=8 * pixels.dtype.itemsize,
                                bits_stored=bits_stored, signed=signed)
    dataset.PixelData = np.ascontiguousarray(pixels).tobytes()
    return dataset


def _lut_item(first: int, table: np.ndarray, bits: int, as_words: bool = True,
              descriptor_vr: str = "US") -> Dataset:
    """A LUT item. With `descriptor_vr` US a negative first mapped value is stored as its
    unsigned 16-bit word, as some files do; with SS as a signed one."""
    item = Dataset()
    first = first % 65536 if descriptor_vr == "US" else first
    item.add_new(0x00283002, descriptor_vr, [len(table) % 65536, first, bits])
    if as_words:
        item.add_new(0x00283006, "OW", np.asarray(table, dtype="<u2").tobytes())
    else:
        item.add_new(0x00283006, "US", [int(v) for v in table])
    return item


def _save(dataset: Dataset, path: Path) -> Path:
    dataset.save_as(path, enforce_file_format=True)
    return path


def _scaled(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip(np.rint((values - low) * 255.0 / (high - low)), 0, 255).astype(np.uint8)


def test_an_8bit_voi_lut_of_4096_entries_uses_all_of_them(tmp_path):
    # The bug: indices held in uint8 wrapped, so only the first 256 entries (0-15) were used.
    table = np.arange(4096) // 16  # 12-bit input -> 8-bit output
    dataset = _dataset(RAMP_12BIT)
    dataset.VOILUTSequence = Sequence([_lut_item(0, table, 8)])
    gray = read_grayscale(_save(dataset, tmp_path / "a.dcm"))
    np.testing.assert_array_equal(gray, (RAMP_12BIT // 16).astype(np.uint8))
    assert gray.min() == 0 and gray.max() == 255


def test_a_16bit_voi_lut_maps_its_output_range_onto_0_255(tmp_path):
    table = 4095 - np.arange(4096)  # an inverting 16-bit LUT (values up to 4095)
    dataset = _dataset(RAMP_12BIT)
    dataset.VOILUTSequence = Sequence([_lut_item(0, table, 16, as_words=False)])
    gray = read_grayscale(_save(dataset, tmp_path / "a.dcm"))
    np.testing.assert_array_equal(gray, _scaled(4095.0 - RAMP_12BIT, 0, 65535))


def test_voi_lut_clamps_below_its_first_value_and_above_its_last(tmp_path):
    table = np.arange(256)  # maps stored values 1000..1255 onto 0..255
    dataset = _dataset(RAMP_12BIT)
    dataset.VOILUTSequence = Sequence([_lut_item(1000, table, 8)])
    gray = read_grayscale(_save(dataset, tmp_path / "a.dcm"))
    expected = np.clip(RAMP_12BIT.astype(int) - 1000, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(gray, expected)


@pytest.mark.parametrize("descriptor_vr", ["US", "SS"])
def test_signed_pixels_with_a_negative_first_mapped_value(descriptor_vr, tmp_path):
    stored = (RAMP_12BIT.astype(np.int16) - 2048)  # -2048 .. 2047
    table = np.arange(4096) // 16
    dataset = _dataset(stored, signed=True)
    dataset.VOILUTSequence = Sequence([_lut_item(-2048, table, 8, descriptor_vr=descriptor_vr)])
    gray = read_grayscale(_save(dataset, tmp_path / "a.dcm"))
    np.testing.assert_array_equal(gray, ((stored.astype(int) + 2048) // 16).astype(np.uint8))


def test_an_8bit_modality_lut_then_the_real_range(tmp_path):
    stored = (RAMP_12BIT % 256).astype(np.uint8)
    table = 255 - np.arange(256)
    dataset = _dataset(stored, bits_stored=8)
    dataset.ModalityLUTSequence = Sequence([_lut_item(0, table, 8)])
    gray = read_grayscale(_save(dataset, tmp_path / "a.dcm"))
    np.testing.assert_array_equal(gray, 255 - stored)


def test_a_16bit_modality_lut_with_an_offset_then_a_window(tmp_path):
    table = np.arange(1000) * 50  # stored 100..1099 -> 0..49950
    dataset = _dataset(RAMP_12BIT)
    dataset.ModalityLUTSequence = Sequence([_lut_item(100, table, 16)])
    dataset.WindowCenter, dataset.WindowWidth = 25000, 20001
    gray = read_grayscale(_save(dataset, tmp_path / "a.dcm"))
    modality = table[np.clip(RAMP_12BIT.astype(int) - 100, 0, 999)].astype(np.float64)
    # LINEAR window (C.11.2.1.2.1) onto the modality LUT's 16-bit range, then to 0-255
    center, width = 25000 - 0.5, 20001 - 1
    windowed = ((modality - center) / width + 0.5) * 65535
    windowed[modality <= center - width / 2] = 0
    windowed[modality > center + width / 2] = 65535
    np.testing.assert_allclose(gray, _scaled(windowed, 0, 65535), atol=1)


def test_lut_data_shorter_than_its_descriptor_is_a_one_line_error(tmp_path):
    dataset = _dataset(RAMP_12BIT)
    item = _lut_item(0, np.arange(4096), 16)
    item[0x00283002].value = [8192, 0, 16]
    dataset.VOILUTSequence = Sequence([item])
    with pytest.raises(ScanError, match="LUT data holds 4096 entries, its descriptor says 8192"):
        read_grayscale(_save(dataset, tmp_path / "a.dcm"))


def test_a_large_16bit_frame_is_scaled_in_tiles_like_a_small_one(tmp_path, monkeypatch):
    from lungcnn.edge import dicom

    dataset = _dataset(RAMP_12BIT)
    dataset.RescaleSlope, dataset.RescaleIntercept = 2, -1024
    path = _save(dataset, tmp_path / "a.dcm")
    whole = read_grayscale(path)
    monkeypatch.setattr(dicom, "TILE_PIXELS", 100)  # 1-row tiles
    np.testing.assert_array_equal(read_grayscale(path), whole)
    np.testing.assert_array_equal(whole, _scaled(RAMP_12BIT * 2.0 - 1024, -1024, 7166))


# --- compressed transfer syntaxes ------------------------------------------------------

COMPRESSED = {"jpeg-ls": (JPEGLSLossless, "jpeg_ls"), "jpeg-2000": (JPEG2000Lossless, "openjpeg")}


def _compressed(tmp_path: Path, kind: str) -> Path:
    syntax, encoder = COMPRESSED[kind]
    pytest.importorskip(encoder)  # the encoder that makes the test file (test extra)
    dataset = _dataset(RAMP_12BIT)
    dataset.compress(syntax, RAMP_12BIT)
    return _save(dataset, tmp_path / f"{kind}.dcm")


@pytest.mark.parametrize("kind", sorted(COMPRESSED))
def test_compressed_dicom_decodes_with_the_dicom_extra(kind, tmp_path):
    pytest.importorskip("pylibjpeg")
    gray = read_grayscale(_compressed(tmp_path, kind))
    np.testing.assert_array_equal(gray, _scaled(RAMP_12BIT.astype(np.float64), 0, 4095))


def test_a_missing_decoder_is_named(tmp_path):
    path = _compressed(tmp_path, "jpeg-ls")
    blocked = ["pylibjpeg", "jpeg_ls", "gdcm"]  # every decoder pydicom could use for JPEG-LS
    code = (f"import sys\nfor m in {blocked!r}: sys.modules[m] = None\n"
            "from lungcnn.edge.decode import ScanError, read_grayscale\n"
            f"try:\n    read_grayscale({str(path)!r})\n"
            "except ScanError as error:\n    print(error)\n")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert completed.returncode == 0, completed.stderr
    assert "JPEG-LS needs the pylibjpeg-libjpeg decoder" in completed.stdout
    assert "lungcnn[dicom]" in completed.stdout
