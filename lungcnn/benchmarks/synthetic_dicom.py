"""A minimal valid DICOM dataset to build test and benchmark files from: secondary capture,
explicit VR little endian, one gray sample per pixel; and compressed frames that declare more
than they hold. Needs pydicom (and pylibjpeg-openjpeg for JPEG 2000)."""

from __future__ import annotations

import io
import struct

import numpy as np


def secondary_capture(rows: int, columns: int, *, bits_allocated: int = 16,
                      bits_stored: int = 12, signed: bool = False,
                      photometric: str = "MONOCHROME2"):
    """The dataset's header; the caller adds PixelData (and any LUT or window)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "OT"
    dataset.Rows, dataset.Columns, dataset.SamplesPerPixel = rows, columns, 1
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated, dataset.BitsStored = bits_allocated, bits_stored
    dataset.HighBit = bits_stored - 1
    dataset.PixelRepresentation = int(signed)
    return dataset


def dicom_bytes(dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def encapsulated_dicom(codestream: bytes, rows: int, columns: int, syntax: str, *,
                       bits_allocated: int = 8, bits_stored: int = 8,
                       signed: bool = False) -> bytes:
    """A DICOM file whose one compressed frame is `codestream`, whatever it declares; the
    header says `rows` x `columns` and the given sample layout."""
    from pydicom.encaps import encapsulate

    dataset = secondary_capture(rows, columns, bits_allocated=bits_allocated,
                                bits_stored=bits_stored, signed=signed)
    dataset.file_meta.TransferSyntaxUID = syntax
    dataset.PixelData = encapsulate([codestream])
    dataset["PixelData"].VR = "OB"
    return dicom_bytes(dataset)


def j2k_declaring(side: int, tile: int | None = None) -> bytes:
    """A 64x64 JPEG 2000 codestream whose SIZ says side x side (and tiles of `tile`)."""
    from openjpeg import encode

    data = bytearray(encode(np.zeros((64, 64), np.uint8), bits_stored=8,
                            photometric_interpretation=2))
    at = data.index(b"\xff\x51")
    data[at + 6: at + 14] = struct.pack(">II", side, side)
    if tile is not None:
        data[at + 22: at + 30] = struct.pack(">II", tile, tile)
    return bytes(data)
