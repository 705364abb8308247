"""Bounded cost (issue 22, items 1-6): a small file that declares a huge image, a huge
chunk or a huge number of scans or strips is refused from what it declares, before the
decoder allocates or loops over it; the valid files of the same kinds still decode.
Reproducers are built at test time (tests/edge/bounded_corpus.py); sparse files use no disk."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bounded_corpus as corpus
from lungcnn.edge.decode import ScanError, decode_scan
from lungcnn.edge.headers import MAX_JPEG_SCANS, MAX_STRIPS

REPO = Path(__file__).resolve().parents[2]
TRACED_LIMIT = 64 * 2**20  # Python-level allocations of a refused or small decode


def refused(source, match: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ScanError, match=match):
            decode_scan(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < TRACED_LIMIT


# --- 3. progressive JPEG scans ----------------------------------------------------------


def test_a_jpeg_with_too_many_scans_is_refused_before_decoding():
    refused(corpus.progressive_jpeg_with_scans(MAX_JPEG_SCANS),
            f"JPEG of 64x64 pixels with more than {MAX_JPEG_SCANS} scans")


def test_a_large_jpeg_may_have_fewer_scans():
    """At the pixel limit, libjpeg's own 10 scans and no more (the gray progression has 6)."""
    refused(corpus.progressive_jpeg_with_scans(5, side=8192), "with more than 10 scans")


def test_a_usual_progressive_jpeg_still_decodes():
    assert decode_scan(corpus.jpeg_bytes(progressive=True)).gray.shape == (64, 64)


def test_scans_after_the_end_of_the_image_or_inside_a_thumbnail_do_not_count():
    """libjpeg stops at the end of the image: pictures appended after it (as an MPO file or
    a file written twice has) and an EXIF thumbnail are not decoded, so not counted."""
    one = corpus.jpeg_bytes(progressive=True)
    assert decode_scan(one * (MAX_JPEG_SCANS + 1)).gray.shape == (64, 64)
    exif = Image.Exif()
    exif[0x010E] = "x"
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buffer, "JPEG", exif=exif.tobytes() + b"\xff\xda" * 80)
    assert decode_scan(buffer.getvalue()).gray.shape == (64, 64)


# --- 4. extreme aspect ratios -----------------------------------------------------------


@pytest.mark.parametrize("size", [(67_108_864, 1), (1, 67_108_864), (65537, 2)])
def test_an_absurd_aspect_ratio_is_refused_from_the_header(size):
    refused(corpus.png_header_only(*size), "longer than 65,536 pixels on a side")


# --- 5. declared chunk sizes ------------------------------------------------------------


def test_a_huge_private_png_chunk_is_refused_unread(tmp_path):
    refused(corpus.sparse_png_chunk(tmp_path / "a.png"), "PNG chunk 'prIv' of 1,500,000,000")


def test_a_huge_webp_is_refused_unread(tmp_path):
    refused(corpus.sparse_webp(tmp_path / "a.webp"), "WebP file of 1,500,000,001 bytes")


def test_a_huge_private_dicom_element_is_skipped_not_read(tmp_path):
    pytest.importorskip("pydicom")
    path = corpus.sparse_private_dicom(tmp_path / "a.dcm")
    tracemalloc.start()
    try:
        gray = decode_scan(path).gray
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert gray.shape == (64, 64) and peak < TRACED_LIMIT


# --- 6. TIFF strip tables ---------------------------------------------------------------


def test_a_tiff_with_too_many_strips_is_refused_before_its_table_is_read():
    refused(corpus.tiff_with_strips(64, MAX_STRIPS + 1), f"{MAX_STRIPS + 1:,} strips")


def test_a_tiff_with_one_strip_per_row_within_the_limit_decodes():
    assert decode_scan(corpus.tiff_with_strips(64, 256)).gray.shape == (256, 64)


def test_a_bigtiff_is_checked_too():
    refused(corpus.tiff_with_strips(64, MAX_STRIPS + 1, big=True), f"{MAX_STRIPS + 1:,} strips")
    assert decode_scan(corpus.tiff_with_strips(64, 256, big=True)).gray.shape == (256, 64)


# --- 1. compressed DICOM frames larger than the header ----------------------------------

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_2000 = "1.2.840.10008.1.2.4.91"


def test_a_dicom_jpeg_frame_larger_than_its_header_is_refused_before_decoding():
    pytest.importorskip("pydicom")
    data = corpus.encapsulated_dicom(corpus.jpeg_declaring(16384, 16384), 16, 16,
                                     JPEG_BASELINE)
    assert len(data) < 2048
    refused(data, "frame of 16384x16384 pixels and 1 samples, but the header says 16x16")


def test_a_dicom_jpeg_frame_of_the_header_size_decodes():
    pytest.importorskip("libjpeg")
    data = corpus.encapsulated_dicom(corpus.jpeg_declaring(16, 16), 16, 16, JPEG_BASELINE)
    assert decode_scan(data).gray.shape == (16, 16)


def test_a_dicom_jpeg_2000_frame_larger_than_its_header_is_refused_before_decoding():
    pytest.importorskip("openjpeg")
    data = corpus.encapsulated_dicom(corpus.j2k_declaring(16384), 64, 64, JPEG_2000)
    refused(data, "frame of 16384x16384 pixels and 1 samples, but the header says 64x64")


def test_a_dicom_jpeg_2000_frame_in_too_many_tiles_is_refused():
    pytest.importorskip("openjpeg")
    data = corpus.encapsulated_dicom(corpus.j2k_declaring(1024, tile=8), 1024, 1024,
                                     JPEG_2000)
    refused(data, "in 16,384 tiles")


def test_a_dicom_jpeg_2000_frame_of_the_header_size_decodes():
    pytest.importorskip("openjpeg")
    data = corpus.encapsulated_dicom(corpus.j2k_declaring(64), 64, 64, JPEG_2000)
    assert decode_scan(data).gray.shape == (64, 64)


# --- 2. deflated DICOM ------------------------------------------------------------------


def test_a_valid_deflated_dicom_decodes():
    pytest.importorskip("pydicom")
    pixels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 4096
    gray = decode_scan(corpus.deflated_dicom(pixels)).gray
    assert gray.shape == (64, 64) and gray[0, 0] == 0 and gray.max() == 255


def test_a_deflate_bomb_is_refused_once_it_inflates_past_the_limit():
    pytest.importorskip("pydicom")
    data = corpus.deflated_dicom(np.zeros((16, 16), np.uint16), private_bytes=200 * 2**20)
    assert len(data) < 1_000_000
    with pytest.raises(ScanError, match="deflated DICOM inflates to over 128 MiB"):
        decode_scan(data)


# --- the same files through the CLI and the server: one line each, nothing else ---------


def bounded_files(folder: Path) -> dict[str, str]:
    """File name -> a substring of its one-line error, for every reproducer above that
    needs nothing but numpy and Pillow (and pydicom when installed)."""
    files = {
        "scans.jpg": (corpus.progressive_jpeg_with_scans(MAX_JPEG_SCANS), "scans"),
        "thin.png": (corpus.png_header_only(67_108_864, 1), "on a side"),
        "strips.tif": (corpus.tiff_with_strips(64, MAX_STRIPS + 1), "strips or tiles"),
    }
    if importlib.util.find_spec("pydicom"):
        files["bomb.dcm"] = (corpus.deflated_dicom(np.zeros((16, 16), np.uint16),
                                                   private_bytes=200 * 2**20), "inflates")
        files["frame.dcm"] = (corpus.encapsulated_dicom(corpus.jpeg_declaring(16384, 16384),
                                                        16, 16, JPEG_BASELINE), "header says")
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    corpus.sparse_png_chunk(folder / "chunk.png")
    corpus.sparse_webp(folder / "huge.webp")
    return {**{name: reason for name, (_, reason) in files.items()},
            "chunk.png": "PNG chunk", "huge.webp": "WebP file"}


def test_the_cli_gives_one_line_per_file(tmp_path, int8_model):
    expected = bounded_files(tmp_path)
    completed = subprocess.run(
        [sys.executable, "-m", "lungcnn.edge", "--json", "--model", str(int8_model),
         str(tmp_path)], capture_output=True, timeout=300, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert completed.returncode == 1
    records = {Path(r["file"]).name: r for r in map(json.loads, completed.stdout.splitlines())}
    lines = completed.stderr.decode().splitlines()
    assert len(lines) == len(expected) == len(records)
    assert all(line.startswith("edge-classify: error: ") for line in lines)
    for name, reason in expected.items():
        assert records[name]["status"] == "error" and reason in records[name]["error"], name


def test_the_server_gives_a_422_with_each_files_line(tmp_path, int8_model):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from lungcnn.edge.serve.app import create_app
    from lungcnn.edge.serve.settings import ServeSettings

    expected = {name: reason for name, reason in bounded_files(tmp_path).items()
                if (tmp_path / name).stat().st_size < 2**20}  # the sparse ones are 1.5 GB
    files = [("files", (name, (tmp_path / name).read_bytes())) for name in expected]
    with TestClient(create_app(ServeSettings(model=int8_model)),
                    base_url="http://127.0.0.1:8000") as client:
        response = client.post("/v1/classify", files=files)
    assert response.status_code == 422
    for record in response.json()["records"]:
        assert expected[record["file"]] in record["error"]
