"""What every lungcnn command shares when it talks to people: the not-a-medical-device notice,
the exit codes, and the one-line error (`fail`, `print_error`).

Every stage's CLI imports these, so a notice, a code or an error line reads the same in all.
"""

from __future__ import annotations

import sys
import threading
import unicodedata
from typing import NoReturn

import typer

from lungcnn.edge.interrupt import EXIT_INTERRUPTED

NOTICE = (
    "Not a medical device: must not be used for diagnosis or any clinical decision "
    "without a clinical study."
)

EXIT_OK = 0  # everything done
EXIT_FAILED = 1  # the command ran, but some inputs failed (or a check it was asked for failed)
EXIT_USAGE = 2  # nothing useful done: bad option, unusable model or data, output not writable
# EXIT_INTERRUPTED (130, 128 + SIGINT): Ctrl-C; everything reported before it is complete

# Held while anything is written to stderr and while file descriptor 2 is redirected to
# capture the runtime's native log (edge/interpreter.py): a worker thread loading a model must
# not swallow an error line that the main thread prints at that moment.
STDERR_LOCK = threading.RLock()


class ScanError(ValueError):
    """A file that cannot be turned into a model input; the message says why in one line."""


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` on one terminal line: control characters (newline, escape, ...) and line
    separators become visible escapes such as \\n or \\x1b, so a file name cannot split an
    error line or a table row, nor drive the terminal."""
    if text.isprintable():
        return text
    return "".join(_escape(character) for character in text)


def _escape(character: str) -> str:
    if character in _ESCAPES:
        return _ESCAPES[character]
    if character.isprintable() or character == " ":
        return character
    if unicodedata.category(character) in ("Zs",):  # e.g. a no-break space: harmless
        return character
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, for one-line error reports."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def print_error(message: str, prog: str | None = None) -> None:
    """Write `prog: error: message` as one line on stderr; never raises (a closed or full
    stderr loses the line, the exit code still tells)."""
    line = printable(f"{prog}: error: {message}" if prog else f"error: {message}")
    stream = sys.stderr
    if stream is None:  # started with stderr closed
        return
    try:
        with STDERR_LOCK:
            stream.write(line + "\n")
            stream.flush()
    except (OSError, ValueError):
        pass


def fail(message: str, code: int = EXIT_USAGE, prog: str | None = None) -> NoReturn:
    """Print the one-line error and end the command with `code`."""
    print_error(message, prog)
    raise typer.Exit(code)


def run_app(app: typer.Typer, args: list[str] | None, prog: str) -> NoReturn:
    """Run a Typer command line and exit with its code; a usage error (unknown option, bad
    value) is one line, `prog: error: MESSAGE (see: prog --help)`, and exit code 2, instead of
    a boxed multi-line message."""
    try:
        code = app(args=args, prog_name=prog, standalone_mode=False)
    except typer.Abort:
        print_error("interrupted", prog)
        code = EXIT_INTERRUPTED
    except typer.TyperException as error:  # typer's own click: a usage error
        code = getattr(error, "exit_code", EXIT_USAGE)
        context = getattr(error, "ctx", None)
        if type(error).__name__ == "NoArgsIsHelpError":  # no arguments: the help, as before
            typer.echo(context.get_help() if context else "")
        else:
            command = context.command_path if context else prog
            print_error(f"{error.format_message()} (see: {command} --help)", prog)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
