"""A minimal valid DICOM dataset to build test and benchmark files from: secondary capture,
explicit VR little endian, one gray sample per pixel. Needs pydicom."""

from __future__ import annotations


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
