"""The converter's errors: a one-line message and the exit code the CLI returns."""

from __future__ import annotations

EXIT_USAGE = 2  # bad arguments or inputs: model, representative folder, data, output path
EXIT_PARITY = 1  # --strict: the TFLite model disagrees with Keras too often


class ConvertError(Exception):
    exit_code = EXIT_USAGE


class ParityError(ConvertError):
    exit_code = EXIT_PARITY
