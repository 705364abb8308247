"""The converter's errors: a one-line message and the exit code the CLI returns."""

from __future__ import annotations

from lungcnn.edge.errors import EXIT_FAILED, EXIT_USAGE

EXIT_PARITY = EXIT_FAILED  # --strict: the TFLite model disagrees with Keras too often
# EXIT_USAGE: bad arguments or inputs: model, representative folder, data, output path


class ConvertError(Exception):
    exit_code = EXIT_USAGE


class ParityError(ConvertError):
    exit_code = EXIT_PARITY
