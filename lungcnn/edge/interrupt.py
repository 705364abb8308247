"""Ctrl-C while a command is still starting (importing numpy, Pillow, the runtime) ends it
with the one-line error and exit code 130, not a traceback from whichever module was loading.

Only the standard library here: this runs before anything heavy is imported.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager

EXIT_INTERRUPTED = 130  # as lungcnn.edge.errors, which imports typer


@contextmanager
def ctrl_c_ends_startup(prog: str):
    """Within the block, SIGINT writes `prog: error: interrupted` and exits 130 at once
    (nothing has been written yet, so nothing is cut); afterwards Ctrl-C is as before."""

    def stop(_signum, _frame) -> None:
        try:
            os.write(2, f"{prog}: error: interrupted\n".encode())
        except OSError:
            pass
        os._exit(EXIT_INTERRUPTED)

    try:
        previous = signal.signal(signal.SIGINT, stop)
    except ValueError:  # not the main thread: imported by a library user's thread
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
