"""Library noise kept off stderr, so that what is left there is worth reading.

- Library warnings silenced while a scan is decoded, safely across threads. Pillow and
  pydicom warn about oddities they read past (corrupt EXIF, a TIFF tag beyond the end, a
  non-standard DICOM element); the decode itself then decides, and stderr is kept for the
  one-line errors. `warnings.catch_warnings` changes process-wide filters and is not
  thread-safe, so overlapping decodes on worker threads share one: the first to enter
  installs it, the last to leave restores the filters.
- Native log lines known to be harmless (`drop_stderr_lines`): TensorFlow and Ray print them
  from C++ straight to file descriptor 2, where no Python setting reaches them.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
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


def drop_stderr_lines(pattern: re.Pattern[bytes]) -> None:
    """From now on, lines written to file descriptor 2 of this process (by native code or
    by Python) that `pattern` matches at their start are dropped; every other line passes,
    in order; a pattern given again is not added twice. The first call routes fd 2 through a
    pipe read by a thread; at exit the original stderr is restored and what is left in the
    pipe passed on."""
    global _line_filter
    if _line_filter is None:
        _line_filter = _StderrLineFilter()
        atexit.register(_line_filter.close)
    if pattern not in _line_filter.patterns:  # a command may ask again (another session)
        _line_filter.patterns.append(pattern)


class _StderrLineFilter:
    def __init__(self):
        self.patterns: list[re.Pattern[bytes]] = []
        sys.stderr.flush()
        self._original = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        self._pipe = os.fstat(write_end)
        os.close(write_end)
        self._thread = threading.Thread(target=self._forward, args=(read_end,), daemon=True,
                                        name="stderr-line-filter")
        self._thread.start()

    def _forward(self, read_end: int) -> None:
        with os.fdopen(read_end, "rb") as pipe, \
                os.fdopen(os.dup(self._original), "wb", buffering=0) as out:
            for line in pipe:
                if any(pattern.match(line) for pattern in self.patterns):
                    continue
                try:
                    out.write(line)
                except OSError:
                    pass  # stderr went away: keep draining, so that writers never block

    def close(self) -> None:
        sys.stderr.flush()
        current = os.fstat(2)
        if (current.st_dev, current.st_ino) == (self._pipe.st_dev, self._pipe.st_ino):
            os.dup2(self._original, 2)  # the pipe's last writer: the thread reads to its end
        self._thread.join(timeout=5)


_line_filter: _StderrLineFilter | None = None
