"""The data contract shared by every stage: class names, input size, and how a file
becomes the model's input array.

Trainer, convert, edge and benchmarks all call `load_scan`, so the pixels a model is trained
on are exactly the pixels the device feeds it. Only numpy and Pillow are needed here
(pydicom for DICOM files, an optional extra); never TensorFlow.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

CLASS_NAMES: tuple[str, ...] = ("Covid", "Normal", "Viral Pneumonia")
INPUT_SIZE: int = 512  # the reference network's side; an architecture may declare another
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".dcm", ".dicom"}
)
# What Pillow may decode (by content); the rest (EPS via Ghostscript, PSD, ...) is refused.
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
SUPPORTED_FORMATS = "PNG, JPEG, BMP, TIFF, WebP or DICOM"
# Refuse anything larger before decoding it fully; below Pillow's own bomb warning (89 MP).
MAX_PIXELS = 8192 * 8192
# Bilinear with Pillow's support scaling is antialiased when shrinking, so a 4000 px scan
# and a 640 px re-encoding of it give nearly the same input. (The reference notebook used
# Keras' default nearest-neighbour resize, which aliases on large scans.)
RESAMPLE = Image.Resampling.BILINEAR
CONTRACT_VERSION = 1

_DICOM_MAGIC_OFFSET = 128


class ScanError(ValueError):
    """A file that cannot be turned into a model input; the message says why in one line."""


@dataclass(frozen=True)
class ScanSpec:
    """What the contract promises a model: a square grayscale uint8 image of `size` pixels."""

    size: int = INPUT_SIZE

    def to_json(self) -> dict:
        return {
            "contract_version": CONTRACT_VERSION,
            "size": self.size,
            "channels": 1,
            "dtype": "uint8",
            "pixel_range": [0, 255],
            "grayscale": "ITU-R 601-2 luma (Pillow 'L'); 16-bit and DICOM scaled by real range",
            "resize": "bilinear, antialiased, aspect ratio not preserved",
        }


def load_scan(path: str | Path, size: int = INPUT_SIZE) -> np.ndarray:
    """Decode `path` into the model input: uint8 array of shape (size, size, 1), raw 0-255."""
    return resize_gray(read_grayscale(path), size)


def resize_gray(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D uint8 grayscale image to (size, size, 1), ignoring aspect ratio."""
    image = Image.fromarray(gray, mode="L")
    if image.size != (size, size):
        image = image.resize((size, size), RESAMPLE)
    return np.asarray(image, dtype=np.uint8)[:, :, None]


def read_grayscale(source: str | Path | bytes) -> np.ndarray:
    """Decode any supported scan, a file or its bytes (an upload), into a 2-D uint8
    grayscale array at its own resolution.

    The format is recognised by content, not by extension. Raises ScanError.
    """
    if isinstance(source, bytes):
        if not source:
            raise ScanError("empty file")
        opened = io.BytesIO(source)
        head = source[: _DICOM_MAGIC_OFFSET + 4]
    else:
        opened = Path(source)
        head = _read_head(opened)
    if _is_dicom(head):
        return _read_dicom(opened)
    return _read_with_pillow(opened)


def is_image_file(path: Path) -> bool:
    """True for names a folder scan should pick up (case-insensitive extension)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def is_dicom_file(path: Path) -> bool:
    """True if `path` starts like a DICOM file (DICOM folders often have no extensions)."""
    try:
        return _is_dicom(_read_head(path))
    except ScanError:
        return False


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            head = handle.read(_DICOM_MAGIC_OFFSET + 4)
    except IsADirectoryError:
        raise ScanError("is a directory") from None
    except FileNotFoundError:
        raise ScanError("no such file") from None
    except PermissionError:
        raise ScanError("permission denied") from None
    except OSError as error:
        raise ScanError(f"cannot read: {error.strerror or error}") from None
    if not head:
        raise ScanError("empty file")
    return head


def _is_dicom(head: bytes) -> bool:
    return head[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM"


def _read_with_pillow(path: Path | io.BytesIO) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. corrupt EXIF: the decode below still decides
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=PILLOW_FORMATS) as image:
                _check_pixel_limit(image.size)
                image.load()
                return _pil_to_gray(ImageOps.exif_transpose(image) or image)
    except ScanError:
        raise
    except Image.UnidentifiedImageError:
        raise ScanError(f"not a supported image format ({SUPPORTED_FORMATS})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ScanError(f"image larger than the {MAX_PIXELS:,}-pixel limit") from None
    except PermissionError:
        raise ScanError("permission denied") from None
    except Exception as error:  # decoders raise many types on bad data (struct.error, ...)
        raise ScanError(f"corrupt or truncated image ({first_line(error)})") from None


def _check_pixel_limit(size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise ScanError(
            f"image of {width}x{height} pixels exceeds the {MAX_PIXELS:,}-pixel limit"
        )
    if width < 1 or height < 1:
        raise ScanError("image has no pixels")


def _pil_to_gray(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _scale_to_uint8(np.asarray(image))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        image = _flatten_alpha(image)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.uint8)


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite on black: a scan's transparent margin is background, and background is dark."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _scale_to_uint8(
    pixels: np.ndarray, value_range: tuple[float, float] | None = None
) -> np.ndarray:
    """Map `value_range` (default: the image's real range, not the dtype's) onto 0-255."""
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.ndim == 3:
        pixels = pixels.mean(axis=2)
    finite = pixels[np.isfinite(pixels)]
    if finite.size == 0:
        raise ScanError("image has no finite pixel values")
    low, high = value_range or (float(finite.min()), float(finite.max()))
    if high <= low:
        return np.zeros(pixels.shape, dtype=np.uint8)
    scaled = (np.nan_to_num(pixels, nan=low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _read_dicom(path: Path | io.BytesIO) -> np.ndarray:
    try:
        import pydicom
    except ImportError:
        raise ScanError(
            "DICOM file, but pydicom is not installed: pip install 'lungcnn[dicom]'"
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about oddities it can work around
            return _dicom_to_gray(pydicom.dcmread(path))
    except ScanError:
        raise
    except Exception as error:  # pydicom raises many types for bad files
        raise ScanError(f"unreadable DICOM ({first_line(error)})") from None


def _dicom_to_gray(dataset) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    rows, columns = int(dataset.Rows), int(dataset.Columns)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    _check_pixel_limit((columns, rows * frames))
    pixels = apply_modality_lut(dataset.pixel_array, dataset)
    if frames > 1:
        pixels = pixels[0]  # multi-frame: the first frame
    window_range = _voi_output_range(dataset)
    if window_range is not None:
        pixels = apply_voi_lut(pixels, dataset)
    gray = _scale_to_uint8(pixels, window_range)
    if str(dataset.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        gray = 255 - gray
    return gray


def _voi_output_range(dataset) -> tuple[float, float] | None:
    """The output range of the file's VOI LUT or window (None if it has neither).

    A window maps onto the stored bit depth (BitsStored, after rescale slope/intercept), as
    pydicom's apply_windowing does; that range, not the pixels' extremes, becomes 0-255 so
    the window the file asks for is the one the model sees.
    """
    if dataset.get("VOILUTSequence"):
        bits = int(dataset.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    if dataset.get("WindowCenter") is None or dataset.get("WindowWidth") is None:
        return None
    bits = int(dataset.BitsStored)
    if dataset.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(dataset.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    if int(dataset.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2**bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return low, high


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, for one-line error reports."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
