"""The benchmark's one error type."""


class BenchError(RuntimeError):
    """The benchmark cannot run: a run directory, model or dataset is missing (one line)."""
