"""A corpus of hostile inputs for edge-classify, built at test time (nothing large committed):
special files, broken and lying files, odd names, odd folders. Each case is the command-line
argument and what its record must say: the reason of its error (a substring), or None when
it must be classified."""

from __future__ import annotations

import os
import socket
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DEEP_LEVELS = 300  # deep; test_edge_hostile also walks it under a lower recursion limit
# Every case, in order (character-device and the DICOM ones only where /dev/zero and
# pydicom exist).
CASE_NAMES = (
    "fifo-named-png",
    "fifo-without-extension",
    "socket",
    "character-device",
    "empty",
    "text-named-png",
    "random-bytes",
    "truncated-jpeg",
    "truncated-png",
    "png-bad-crc",
    "png-header-only",
    "png-zero-size",
    "png-bomb-header",
    "png-over-pixel-limit",
    "gif",
    "pdf-named-png",
    "postscript",
    "dicom-magic-only",
    "newline-in-name",
    "escape-in-name",
    "tab-and-carriage-return",
    "dash-first",
    "spaces-and-quotes",
    "unicode-name",
    "longest-name",
    "name-not-utf8",
    "name-too-long",
    "symlink-loop",
    "dangling-symlink",
    "symlink-to-fifo",
    "folder-named-png",
    "folder-with-fifos-and-a-link",
    "folder-300-levels-deep",
    "pattern-without-matches",
    "dicom-no-pixel-data",
    "dicom-short-pixel-data",
    "dicom-zero-rows",
    "dicom-huge-header",
    "dicom-truncated",
)


@dataclass(frozen=True)
class Case:
    name: str
    argument: Path
    reason: str | None  # None: classified; else a substring of its one-line error
    records: int = 1  # how many records the argument expands to
    also: tuple[str, ...] = ()  # the reasons of the other failed records it expands to

    @property
    def reasons(self) -> tuple[str, ...]:
        return ((self.reason,) if self.reason else ()) + self.also


def build_corpus(root: Path, scan: Path) -> list[Case]:
    """Every case under `root`; `scan` is a valid scan file the cases are made from."""
    root.mkdir(parents=True, exist_ok=True)
    data = scan.read_bytes()
    cases = [
        *_special_files(root),
        *_broken_files(root, data),
        *_odd_names(root, data),
        *_links(root, data),
        *_folders(root, data),
        *_dicom_files(root),
    ]
    assert len({case.name for case in cases}) == len(cases)
    return cases


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _special_files(root: Path) -> list[Case]:
    fifo = root / "fifo.png"
    os.mkfifo(fifo)
    bare_fifo = root / "fifo"
    os.mkfifo(bare_fifo)
    sock_path = root / "socket.png"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock_path))
    listener.close()  # the socket file stays
    cases = [
        Case("fifo-named-png", fifo, "not a regular file: a named pipe"),
        Case("fifo-without-extension", bare_fifo, "not a regular file: a named pipe"),
        Case("socket", sock_path, "not a regular file: a socket"),
    ]
    if Path("/dev/zero").exists():
        cases.append(Case("character-device", Path("/dev/zero"),
                          "not a regular file: a character device"))
    return cases


def _png_header(width: int, height: int, bit_depth: int = 8, colour: int = 0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + crc
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + end


def _small_png() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)).save(buffer, "PNG")
    return buffer.getvalue()


def _broken_files(root: Path, data: bytes) -> list[Case]:
    png = _small_png()
    rng = np.random.default_rng(13)
    bad_crc = bytearray(png)
    bad_crc[len(png) // 2] ^= 0xFF
    return [
        Case("empty", _write(root / "empty.png", b""), "empty file"),
        Case("text-named-png", _write(root / "text.png", b"hello\n"), "not a supported image"),
        Case("random-bytes", _write(root / "random.jpg", rng.bytes(4096)), "not a supported"),
        Case("truncated-jpeg", _write(root / "truncated.jpg", data[: len(data) // 3]),
             "truncated"),
        Case("truncated-png", _write(root / "truncated.png", png[: len(png) // 2]), "truncated"),
        Case("png-bad-crc", _write(root / "crc.png", bytes(bad_crc)), "corrupt"),
        Case("png-header-only", _write(root / "header.png", _png_header(64, 64)), "corrupt"),
        Case("png-zero-size", _write(root / "zero.png", _png_header(0, 0)),
             "not a supported image format"),
        Case("png-bomb-header", _write(root / "bomb.png", _png_header(100_000, 100_000)),
             "pixel limit"),
        Case("png-over-pixel-limit", _write(root / "big.png", _png_header(8193, 8192, 16, 6)),
             "pixel limit"),
        Case("gif", _write(root / "a.gif", b"GIF89a" + bytes(20)), "not a supported image"),
        Case("pdf-named-png", _write(root / "doc.png", b"%PDF-1.4\n%\xe2\xe3\n"),
             "not a supported"),
        Case("postscript", _write(root / "a.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n"),
             "not a supported"),
        Case("dicom-magic-only", _write(root / "magic.dcm", bytes(128) + b"DICM"),
             "unreadable DICOM"),
    ]


def _odd_names(root: Path, data: bytes) -> list[Case]:
    names = {
        "newline-in-name": "new\nline.jpg",
        "escape-in-name": "esc\x1b[31mred.jpg",
        "tab-and-carriage-return": "tab\tcr\r.jpg",
        "dash-first": "-dash.jpg",
        "spaces-and-quotes": "it's \"quoted\" .jpg",
        "unicode-name": "\u00e9t\u00e9 \u2028 x.jpg",
        "longest-name": "n" * 251 + ".jpg",
    }
    cases = [Case(kind, _write(root / name, data), None) for kind, name in names.items()]
    not_utf8 = os.fsencode(str(root)) + b"/bad\xff\xfe.jpg"
    with open(not_utf8, "wb") as handle:
        handle.write(data)
    cases.append(Case("name-not-utf8", Path(os.fsdecode(not_utf8)), None))
    too_long = root / ("x" * 300 + ".jpg")  # longer than a file name may be
    cases.append(Case("name-too-long", too_long, "cannot read: File name too long"))
    return cases


def _links(root: Path, data: bytes) -> list[Case]:
    loop = root / "loop.png"
    loop.symlink_to(loop)
    dangling = root / "dangling.png"
    dangling.symlink_to(root / "nowhere.png")
    fifo_link = root / "fifo-link.jpg"
    fifo_link.symlink_to(root / "fifo.png")
    return [
        Case("symlink-loop", loop, "Too many levels of symbolic links"),
        Case("dangling-symlink", dangling, "no such file"),
        Case("symlink-to-fifo", fifo_link, "not a regular file: a named pipe"),
    ]


def _folders(root: Path, data: bytes) -> list[Case]:
    named_like_a_file = root / "folder.png"
    named_like_a_file.mkdir()
    mixed = root / "mixed"
    (mixed / "sub").mkdir(parents=True)
    os.mkfifo(mixed / "IM0001")  # extension-less: looked at for a DICOM header, never opened
    os.mkfifo(mixed / "x.png")
    _write(mixed / "sub" / "ok.jpg", data)
    (mixed / "linked").symlink_to(root / "folder.png", target_is_directory=True)
    deep = root / "deep"
    nested = deep
    for _ in range(DEEP_LEVELS + 1):  # level by level: makedirs recurses once per level
        os.mkdir(nested)
        nested = nested / "d"
    nested = nested.parent
    _write(nested / "deep.jpg", data)
    return [
        Case("folder-named-png", named_like_a_file, "no image files in folder"),
        Case("folder-with-fifos-and-a-link", mixed, "not a regular file: a named pipe",
             records=3, also=("a symbolic link to a folder, not followed",)),
        Case("folder-300-levels-deep", deep, None),
        Case("pattern-without-matches", root / "nothing-*.png", "no files match this pattern"),
    ]


def _dicom_files(root: Path) -> list[Case]:
    try:
        import pydicom  # noqa: F401
    except ImportError:
        return []
    from lungcnn.benchmarks.synthetic_dicom import secondary_capture

    def dicom(rows: int, columns: int, pixel_bytes: bytes | None):
        dataset = secondary_capture(rows, columns)
        if pixel_bytes is not None:
            dataset.PixelData = pixel_bytes
        return dataset

    cases = []
    specs = {
        "dicom-no-pixel-data": (dicom(64, 64, None), "unreadable DICOM"),
        "dicom-short-pixel-data": (dicom(64, 64, bytes(100)), "unreadable DICOM"),
        "dicom-zero-rows": (dicom(0, 64, b""), "no pixels"),
        "dicom-huge-header": (dicom(65535, 65535, bytes(32)), "pixel limit"),
    }
    for kind, (dataset, reason) in specs.items():
        path = root / f"{kind}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        cases.append(Case(kind, path, reason))
    truncated = root / "dicom-truncated.dcm"
    full = dicom(64, 64, bytes(64 * 64 * 2))
    full.save_as(truncated, enforce_file_format=True)
    truncated.write_bytes(truncated.read_bytes()[:-3000])
    cases.append(Case("dicom-truncated", truncated, "unreadable DICOM"))
    return cases


def model_with_a_fifo(which: str, model: Path, folder: Path) -> Path:
    """A copy of `model` in `folder` whose model file ("model") or manifest ("manifest")
    is a FIFO instead; the path of its model file."""
    import shutil

    copy = folder / "m.tflite"
    if which == "model":
        os.mkfifo(copy)
        shutil.copy(model.with_suffix(".json"), folder / "m.json")
    else:
        shutil.copy(model, copy)
        os.mkfifo(folder / "m.json")
    return copy
