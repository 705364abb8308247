"""Every input format the device accepts decodes to the same grayscale pixels, and every bad
file becomes a one-line ScanError (never another exception)."""

from __future__ import annotations

import io
import random
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from lungcnn.edge import decode
from lungcnn.edge.contract import load_scan
from lungcnn.edge.decode import ScanError, read_grayscale
from lungcnn.edge.pixels import MAX_PIXELS

LOSSY_MEAN_TOLERANCE = 3.0  # mean absolute difference (0-255 scale) allowed for lossy formats


def stretched(gray: np.ndarray) -> np.ndarray:
    """What real-range scaling should give for data that is a linear map of `gray`."""
    low, high = float(gray.min()), float(gray.max())
    return np.rint((gray.astype(np.float64) - low) * 255.0 / (high - low)).astype(np.uint8)


def _save(image: Image.Image, path, **options):
    image.save(path, **options)
    return path


def _palette(gray: Image.Image) -> Image.Image:
    palette_image = gray.convert("P")  # an "L" image keeps its 256 gray levels as the palette
    assert palette_image.mode == "P"
    return palette_image


def _cmyk(gray: Image.Image) -> Image.Image:
    return gray.convert("RGB").convert("CMYK")


# name -> (file name, writer(gray_image, path), exact?)
LOSSLESS_8BIT = {
    "png-gray": ("a.png", lambda g, p: _save(g, p)),
    "png-rgb": ("a.png", lambda g, p: _save(g.convert("RGB"), p)),
    "png-rgba-opaque": ("a.png", lambda g, p: _save(g.convert("RGBA"), p)),
    "png-palette": ("a.png", lambda g, p: _save(_palette(g), p)),
    "bmp": ("a.bmp", lambda g, p: _save(g.convert("RGB"), p)),
    "tiff-8bit": ("a.tif", lambda g, p: _save(g, p)),
    "webp-lossless": ("a.webp", lambda g, p: _save(g.convert("RGB"), p, lossless=True)),
    "png-named-jpg": ("a.jpg", lambda g, p: _save(g, p, format="PNG")),
}
LOSSY = {
    "jpeg-baseline": ("a.jpg", lambda g, p: _save(g.convert("RGB"), p, quality=95)),
    "jpeg-progressive": (
        "a.jpeg",
        lambda g, p: _save(g.convert("RGB"), p, quality=95, progressive=True),
    ),
    "jpeg-grayscale": ("a.JPG", lambda g, p: _save(g, p, quality=95)),
    "jpeg-cmyk": ("a.jpg", lambda g, p: _save(_cmyk(g), p, format="JPEG", quality=95)),
    "webp-lossy": ("a.webp", lambda g, p: _save(g.convert("RGB"), p, quality=95)),
}


@pytest.mark.parametrize("kind", sorted(LOSSLESS_8BIT))
def test_lossless_formats_give_the_original_pixels(kind, scan_gray, tmp_path):
    name, writer = LOSSLESS_8BIT[kind]
    path = writer(Image.fromarray(scan_gray), tmp_path / name)
    np.testing.assert_array_equal(read_grayscale(path), scan_gray)


@pytest.mark.parametrize("kind", sorted(LOSSY))
def test_lossy_formats_stay_close_to_the_original(kind, scan_gray, tmp_path):
    name, writer = LOSSY[kind]
    path = writer(Image.fromarray(scan_gray), tmp_path / name)
    decoded = read_grayscale(path)
    assert decoded.shape == scan_gray.shape and decoded.dtype == np.uint8
    difference = np.abs(decoded.astype(float) - scan_gray)
    assert difference.mean() < LOSSY_MEAN_TOLERANCE


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_16bit_is_scaled_by_its_real_range_not_clipped(suffix, scan_gray, tmp_path):
    twelve_bit = scan_gray.astype(np.uint16) * 16 + 7  # 12-bit data in a 16-bit container
    path = tmp_path / f"a.{suffix}"
    Image.fromarray(twelve_bit).save(path)
    np.testing.assert_allclose(read_grayscale(path), stretched(scan_gray), atol=1)


def test_alpha_is_flattened_on_black(scan_gray, tmp_path):
    rgba = Image.fromarray(scan_gray).convert("RGBA")
    alpha = np.full(scan_gray.shape, 255, np.uint8)
    alpha[:, :20] = 0
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "a.png")
    decoded = read_grayscale(tmp_path / "a.png")
    assert (decoded[:, :20] == 0).all()
    np.testing.assert_array_equal(decoded[:, 20:], scan_gray[:, 20:])


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40), np.uint8)
    pixels[:, :20] = 255  # bright left half
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(tmp_path / "a.jpg", exif=exif, quality=95)
    decoded = read_grayscale(tmp_path / "a.jpg")
    assert decoded.shape == (40, 20)
    assert decoded[:20].mean() > 200 and decoded[20:].mean() < 50  # left half is now on top


def test_load_scan_gives_the_model_input(scan_files):
    scan = load_scan(scan_files[0], 64)
    assert scan.shape == (64, 64, 1) and scan.dtype == np.uint8


# --- DICOM -------------------------------------------------------------------------------


def test_dicom_monochrome2_with_bits_stored(dicom_writer, scan_gray, tmp_path):
    path = dicom_writer(tmp_path / "a.dcm", scan_gray.astype(np.uint16) * 16, bits_stored=12)
    np.testing.assert_allclose(read_grayscale(path), stretched(scan_gray), atol=1)


def test_dicom_monochrome1_is_inverted(dicom_writer, scan_gray, tmp_path):
    inverted = (255 - scan_gray).astype(np.uint16) * 16
    path = dicom_writer(tmp_path / "a.dcm", inverted, bits_stored=12, photometric="MONOCHROME1")
    np.testing.assert_allclose(read_grayscale(path), stretched(scan_gray), atol=1)


def test_dicom_8bit(dicom_writer, scan_gray, tmp_path):
    path = dicom_writer(tmp_path / "a.dcm", scan_gray)
    np.testing.assert_allclose(read_grayscale(path), stretched(scan_gray), atol=1)


def test_dicom_rescale_and_window_are_applied(dicom_writer, tmp_path):
    stored = np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (8, 1))  # a 12-bit ramp
    # Hounsfield-like values stored - 1024; a window over [-500, 500) of them.
    path = dicom_writer(
        tmp_path / "a.dcm", stored, bits_stored=12, slope=1.0, intercept=-1024, window=(0, 1000)
    )
    gray = read_grayscale(path)[0].astype(int)
    values = stored[0].astype(int) - 1024
    assert (gray[values <= -500] == 0).all()
    assert (gray[values >= 500] == 255).all()
    inside = (values > -480) & (values < 480)
    expected = (values[inside] + 500) / 1000 * 255
    np.testing.assert_allclose(gray[inside], expected, atol=2)


def test_dicom_is_recognised_by_content(dicom_writer, scan_gray, tmp_path):
    path = dicom_writer(tmp_path / "a.png", scan_gray)
    assert read_grayscale(path).shape == scan_gray.shape


def test_dicom_without_pydicom_says_how_to_install(
    dicom_writer, scan_gray, tmp_path, monkeypatch
):
    path = dicom_writer(tmp_path / "a.dcm", scan_gray)
    for module in [m for m in sys.modules if m == "pydicom" or m.startswith("pydicom.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "pydicom", None)  # makes `import pydicom` fail
    with pytest.raises(ScanError, match=r"pydicom is not installed.*lungcnn\[dicom\]"):
        read_grayscale(path)


def test_huge_dicom_header_is_refused_before_decoding(dicom_writer, tmp_path):
    path = dicom_writer(tmp_path / "a.dcm", np.zeros((4, 4), np.uint16))
    from pydicom import dcmread

    dataset = dcmread(path)
    dataset.Rows = dataset.Columns = 65535  # pixel data stays 32 bytes
    dataset.save_as(path)
    with pytest.raises(ScanError, match="pixel limit"):
        read_grayscale(path)


# --- bad files ---------------------------------------------------------------------------


def _huge_png_header(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming a huge image, with no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    chunk += struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", 0) + b"IEND" + struct.pack(
        ">I", zlib.crc32(b"IEND")
    )


def _truncated_jpeg(scan_files) -> bytes:
    data = next(p for p in scan_files if p.suffix == ".jpg").read_bytes()
    return data[: len(data) // 2]


def _gif(scan_gray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(scan_gray).save(buffer, format="GIF")
    return buffer.getvalue()


BAD_FILES = {
    "empty": ("a.png", lambda scans, gray: b"", "empty file"),
    "text-named-png": ("a.png", lambda scans, gray: b"hello\n", "not a supported image"),
    "truncated-jpeg": ("a.jpg", lambda scans, gray: _truncated_jpeg(scans), "truncated"),
    "gif-unsupported": ("a.gif", lambda scans, gray: _gif(gray), "not a supported image"),
    "pdf-unsupported": ("a.png", lambda scans, gray: b"%PDF-1.4\n%\xe2\xe3\n", "not a supported"),
    "huge-png": ("a.png", lambda scans, gray: _huge_png_header(100_000, 100_000), "pixel limit"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_files_give_a_one_line_reason(kind, scan_files, scan_gray, tmp_path):
    name, make, reason = BAD_FILES[kind]
    path = tmp_path / name
    path.write_bytes(make(scan_files, scan_gray))
    with pytest.raises(ScanError, match=reason) as caught:
        load_scan(path, 64)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("side", [9_000, 100_000])  # below and above Pillow's own bomb limit
def test_huge_png_is_refused_from_its_header(side, tmp_path):
    # side^2 pixels would need 81 MB / 10 GB if decoded; the refusal comes from the header.
    path = tmp_path / "huge.png"
    path.write_bytes(_huge_png_header(side, side))
    assert path.stat().st_size < 100 and side**2 > MAX_PIXELS
    with pytest.raises(ScanError, match=f"{MAX_PIXELS:,}-pixel limit"):
        read_grayscale(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ScanError, match="no such file"):
        read_grayscale(tmp_path / "missing.png")
    with pytest.raises(ScanError, match="is a directory"):
        read_grayscale(tmp_path)


def test_unreadable_file_is_reported(scan_files, tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    path.write_bytes(scan_files[0].read_bytes())

    def refuse(name, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(name))

    monkeypatch.setattr(decode.os, "open", refuse)
    with pytest.raises(ScanError, match="permission denied"):
        read_grayscale(path)


# --- fuzz --------------------------------------------------------------------------------

FUZZ_CASES = 200


def _mutate(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    operation = rng.choice(["flip", "truncate", "splice", "flip-header"])
    if operation == "truncate":
        return bytes(data[: rng.randrange(len(data))])
    if operation == "splice":
        start = rng.randrange(len(data))
        return bytes(data[:start] + bytes(rng.randrange(256) for _ in range(64)) + data[start:])
    span = min(len(data), 400) if operation == "flip-header" else len(data)
    for _ in range(rng.randint(1, 20)):
        data[rng.randrange(span)] ^= 1 << rng.randrange(8)
    return bytes(data)


@pytest.fixture(scope="module")
def fuzz_seeds(dicom_writer, scan_files, scan_gray, tmp_path_factory) -> list[bytes]:
    folder = tmp_path_factory.mktemp("fuzz_seeds")
    extra = [
        dicom_writer(folder / "a.dcm", scan_gray[:64, :64].astype(np.uint16) * 16, bits_stored=12),
        _save(Image.fromarray(scan_gray[:64, :64]), folder / "a.webp", lossless=True),
        _save(Image.fromarray(scan_gray[:64, :64]), folder / "a.tif"),
    ]
    return [p.read_bytes() for p in [*scan_files, *extra]]


@pytest.mark.filterwarnings("error")  # a warning escaping would be printed as several lines
def test_fuzzed_scans_never_raise_anything_but_scan_error(fuzz_seeds, tmp_path):
    rng = random.Random(20240611)
    outcomes = {"decoded": 0, "refused": 0}
    for case in range(FUZZ_CASES):
        path = tmp_path / f"fuzz{case}"
        path.write_bytes(_mutate(rng.choice(fuzz_seeds), rng))
        try:
            scan = load_scan(path, 32)
        except ScanError as error:
            assert str(error) and "\n" not in str(error), case
            outcomes["refused"] += 1
        else:
            assert scan.shape == (32, 32, 1) and scan.dtype == np.uint8
            outcomes["decoded"] += 1
    assert outcomes["decoded"] > 0 and outcomes["refused"] > 0, outcomes


# --- bounded memory: tiles, the decode budget, one decode per scan ------------------------

TILE_CASES = {
    "gray": lambda g: Image.fromarray(g),
    "rgb": lambda g: Image.fromarray(g).convert("RGB"),
    "rgba-with-alpha": lambda g: Image.merge("RGBA", [Image.fromarray(g)] * 3
                                             + [Image.fromarray(255 - g)]),
    "palette": lambda g: Image.fromarray(g).convert("P"),
    "cmyk": lambda g: Image.fromarray(g).convert("CMYK"),
    "16bit": lambda g: Image.fromarray(g.astype(np.uint16) * 200 + 3),
    "int32": lambda g: Image.fromarray(g.astype(np.int32) * -1000, mode="I"),
    "float-with-nan": lambda g: Image.fromarray(
        np.where(g > 250, np.nan, g.astype(np.float32) / 7), mode="F"),
}


@pytest.mark.parametrize("kind", sorted(TILE_CASES))
def test_tiles_give_the_pixels_of_a_whole_image_decode(kind, scan_gray, tmp_path, monkeypatch):
    path = tmp_path / "a.tif"
    TILE_CASES[kind](scan_gray).save(path)
    whole = decode.decode_scan(path)
    from lungcnn.edge import pixels

    for module in (pixels, decode):  # tiles of part of a row, odd sizes
        monkeypatch.setattr(module, "TILE_PIXELS", 97)
    assert len(list(pixels.tiles(*scan_gray.shape[::-1]))) > 100
    tiled = decode.decode_scan(path)
    np.testing.assert_array_equal(tiled.gray, whole.gray)
    assert tiled.colourfulness == pytest.approx(whole.colourfulness)


def test_tiled_high_bit_scaling_matches_float64_of_the_whole_image(scan_gray, tmp_path):
    values = scan_gray.astype(np.float32) * 3.5 - 100
    Image.fromarray(values, mode="F").save(tmp_path / "a.tif")
    np.testing.assert_array_equal(read_grayscale(tmp_path / "a.tif"), stretched(scan_gray))


@pytest.mark.parametrize("mode, image_format, suffix",
                         [("RGB", "PNG", "png"), ("F", "TIFF", "tif"), ("RGB", "WEBP", "webp")])
def test_an_image_over_the_decode_budget_is_refused_from_its_header(
        mode, image_format, suffix, tmp_path, monkeypatch):
    from lungcnn.edge import pixels

    path = tmp_path / f"a.{suffix}"
    Image.new(mode, (64, 64)).save(path, format=image_format)
    monkeypatch.setattr(pixels, "DECODE_BUDGET", 64 * 64 * 2)  # 2 bytes per pixel
    with pytest.raises(ScanError, match=rf"64x64 pixels \(.*{image_format} {mode}\) needs about"):
        read_grayscale(path)
    Image.new("L", (64, 64)).save(tmp_path / "gray.png")
    assert read_grayscale(tmp_path / "gray.png").shape == (64, 64)  # 1 byte per pixel fits


def test_rgba_colourfulness_from_tiles_is_close_to_a_thumbnail_of_the_whole(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (1200, 900, 3), dtype=np.uint8)
    rgb[:, :450] = (200, 30, 30)
    alpha = np.full((1200, 900, 1), 255, np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=2), mode="RGBA").save(tmp_path / "a.png")
    expected = decode.colourfulness(np.asarray(
        Image.fromarray(rgb).resize((192, 256), Image.Resampling.BICUBIC), dtype=np.float64))
    measured = decode.decode_scan(tmp_path / "a.png").colourfulness
    assert measured == pytest.approx(expected, rel=0.05)


def test_a_scan_file_is_opened_once(scan_files, monkeypatch):
    opened = []
    real_open = decode.os.open
    monkeypatch.setattr(decode.os, "open",
                        lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    scan = decode.decode_scan(scan_files[0])
    assert opened == [scan_files[0]] and scan.gray.ndim == 2


def test_special_files_are_refused_without_opening_them(tmp_path, monkeypatch):
    import os

    os.mkfifo(tmp_path / "pipe.png")
    monkeypatch.setattr(decode.os, "open", lambda *a, **k: pytest.fail("opened a FIFO"))
    with pytest.raises(ScanError, match="not a regular file: a named pipe"):
        read_grayscale(tmp_path / "pipe.png")
    assert decode.is_dicom_file(tmp_path / "pipe.png") is False
