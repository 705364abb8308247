"""The one error of the Pi check's helpers."""


class CheckError(Exception):
    """A failed check; the message is printed as one line."""
