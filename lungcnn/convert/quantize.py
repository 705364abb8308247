"""How each quantization is asked of the TFLite converter (the only TensorFlow code here)."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

QUANTIZATIONS: tuple[str, ...] = ("float32", "float16", "dynamic", "int8")
IO_TYPES: tuple[str, ...] = ("float32", "uint8", "int8")
DEFAULT_INT8_IO = "uint8"  # the device feeds the decoded 0-255 image as is
CONVERTER = "tf.lite.TFLiteConverter.from_keras_model"


@dataclass(frozen=True)
class ConverterSettings:
    """The converter attributes one variant sets; saved in its manifest."""

    quantization: str
    io: str
    optimizations: tuple[str, ...] = ()
    supported_types: tuple[str, ...] = ()
    supported_ops: tuple[str, ...] = ("TFLITE_BUILTINS",)

    @property
    def needs_representative(self) -> bool:
        return self.quantization == "int8"

    def to_json(self) -> dict:
        return {"tool": CONVERTER, **asdict(self)}


def settings_for(quantization: str, io_type: str) -> ConverterSettings:
    if quantization == "float32":
        return ConverterSettings(quantization, io_type)
    if quantization == "float16":
        return ConverterSettings(quantization, io_type, ("DEFAULT",), ("float16",))
    if quantization == "dynamic":
        return ConverterSettings(quantization, io_type, ("DEFAULT",))
    if quantization == "int8":
        # Full-integer: no float fallback kernels, so a layer that cannot be quantized
        # fails the conversion instead of silently staying float.
        return ConverterSettings(quantization, io_type, ("DEFAULT",), (), ("TFLITE_BUILTINS_INT8",))
    raise ValueError(f"unknown quantization {quantization!r}")


def build_tflite(
    model, settings: ConverterSettings, representative_images: np.ndarray | None = None
) -> bytes:
    """Convert an in-memory Keras model; int8 needs the representative images (uint8, NHWC)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [getattr(tf.lite.Optimize, name) for name in settings.optimizations]
    converter.target_spec.supported_types = [getattr(tf, name) for name in settings.supported_types]
    converter.target_spec.supported_ops = [
        getattr(tf.lite.OpsSet, name) for name in settings.supported_ops
    ]
    if settings.needs_representative:
        if representative_images is None or not len(representative_images):
            raise ValueError("int8 conversion needs representative images")
        converter.representative_dataset = lambda: _representative(representative_images)
        converter.inference_input_type = getattr(tf, settings.io)
        converter.inference_output_type = getattr(tf, settings.io)
    # Keras 3's export prints the SavedModel signature to stdout; the converter warns about
    # "statistics for quantized inputs", which the representative dataset supplies.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return converter.convert()


def _representative(images: np.ndarray) -> Iterator[list[np.ndarray]]:
    for image in images:
        yield [image[None].astype(np.float32)]
