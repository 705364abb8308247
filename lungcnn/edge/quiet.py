"""Library warnings silenced while a scan is decoded, safely across threads.

Pillow and pydicom warn about oddities they read past (corrupt EXIF, a TIFF tag beyond the
end, a non-standard DICOM element); the decode itself then decides, and stderr is kept for
the one-line errors. `warnings.catch_warnings` changes process-wide filters and is not
thread-safe, so overlapping decodes on worker threads share one: the first to enter installs
it, the last to leave restores the filters.
"""

from __future__ import annotations

import threading
import warnings


class _SharedQuiet:
    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._context: warnings.catch_warnings | None = None

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._context = warnings.catch_warnings()
                self._context.__enter__()
                warnings.simplefilter("ignore")
            self._depth += 1

    def __exit__(self, *exc_info) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                self._context.__exit__(None, None, None)
                self._context = None


decoder_warnings_silenced = _SharedQuiet()
