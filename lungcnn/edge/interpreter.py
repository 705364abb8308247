"""Opening a TFLite model file with the first runtime installed, and moving tensors in and out
of it: shared by the classifier (`edge.runtime`) and the lung-field segmenter
(`edge.segmenter`). Quantization is read from the interpreter's tensor details.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lungcnn.edge.errors import STDERR_LOCK, first_line

_RUNTIMES = (
    ("ai_edge_litert.interpreter", "Interpreter"),
    ("tflite_runtime.interpreter", "Interpreter"),
    ("tensorflow", "lite.Interpreter"),
)
_TFLITE_MAGIC = b"TFL3"  # FlatBuffer file identifier, bytes 4-8 of every .tflite file


class ModelError(ValueError):
    """A model that cannot be used: missing, not TFLite, or not matching its manifest."""


def interpreter_class():
    """The first TFLite Interpreter class available; TensorFlow is the last resort."""
    for module_name, attribute_path in _RUNTIMES:
        try:
            found = importlib.import_module(module_name)
        except ImportError:
            continue
        for attribute in attribute_path.split("."):
            found = getattr(found, attribute)
        return found
    raise ModelError("no TFLite runtime installed: pip install ai-edge-litert")



def quantize(batch: np.ndarray, detail: dict) -> np.ndarray:
    """Raw 0-255 pixels as the input tensor `detail` takes them."""
    dtype = detail["dtype"]
    scale, zero_point = detail["quantization"]
    if batch.dtype == dtype and (not scale or (scale == 1.0 and zero_point == 0)):
        return batch  # raw pixels are already what the model takes
    pixels = batch.astype(np.float32)
    if np.issubdtype(dtype, np.integer):
        if scale:
            pixels = np.round(pixels / scale + zero_point)
        limits = np.iinfo(dtype)
        pixels = np.clip(pixels, limits.min, limits.max)
    return pixels.astype(dtype)


def dequantize(raw: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.issubdtype(raw.dtype, np.integer) and scale:
        return (raw.astype(np.float32) - zero_point) * scale
    return raw.astype(np.float32)


def check_tflite_file(model_path: Path) -> None:
    """Raise ModelError unless the file reads as a TFLite model (its FlatBuffer identifier)."""
    try:
        with model_path.open("rb") as stream:
            head = stream.read(8)
    except OSError as error:
        raise ModelError(f"{model_path}: cannot read model ({error.strerror or error})") from None
    if head[4:8] != _TFLITE_MAGIC:
        raise ModelError(f"{model_path}: not a TFLite model file")


def open_interpreter(model_path: Path, threads: int | None):
    check_tflite_file(model_path)
    interpreter_type = interpreter_class()
    native_log: list[str] = []
    with _native_stderr_captured(native_log):
        try:
            interpreter = interpreter_type(model_path=str(model_path), num_threads=threads)
            interpreter.allocate_tensors()
        except Exception as error:  # the runtimes raise ValueError/RuntimeError with long texts
            failure = first_line(error)
        else:
            return interpreter
    details = _last_line("".join(native_log))
    reason = f"{failure}: {details}" if details else failure
    raise ModelError(f"{model_path}: cannot load TFLite model ({reason})")


@contextmanager
def _native_stderr_captured(lines: list[str]):
    """Capture into `lines` what the C++ runtime prints on file descriptor 2 while loading a
    model: its INFO chatter would pollute every run, and on failure its last line is the
    real reason. Other threads' stderr lines wait (STDERR_LOCK) instead of being captured."""
    with STDERR_LOCK, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.append(sink.read().decode(errors="replace"))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
