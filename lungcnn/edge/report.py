"""How results are written: a readable table, JSON lines or CSV, each carrying the notice
that this is not a medical device. Rows are written as they come, so big folders stream."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from lungcnn.edge.errors import NOTICE, STDERR_LOCK, printable
from lungcnn.edge.runtime import Prediction
from lungcnn.edge.trust import TRUST_FIELDS

__all__ = ["NOTICE", "ScanResult", "WRITERS", "Progress", "display_name"]
_CONFIDENCE_NOTE = (
    "confidence: the label's probability, calibrated on validation scans when the model's "
    "manifest has a calibration (the class columns are the model's raw probabilities); "
    "flag: ok, uncertain (low or unstable confidence) or out_of_distribution (unlike the "
    "training X-rays)."
)
# `confidence` is the calibrated one, so the trust record's copy of it is not repeated.
_TRUST_RECORD_FIELDS = tuple(key for key in TRUST_FIELDS if key != "calibrated_confidence")
_MAX_FILE_COLUMN = 48
_DECIMALS = 6


@dataclass(frozen=True)
class ScanResult:
    """The outcome for one file: a prediction, or a one-line error (or both, when only the
    heatmap asked for could not be written: the record is then an error)."""

    path: Path
    prediction: Prediction | None = None
    error: str | None = None
    trust: dict | None = None  # edge.trust.Assessment.to_record(): flag, reason, ...
    calibrated_confidence: float | None = None  # the label's temperature-scaled probability

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def file(self) -> str:
        return display_name(self.path)

    def to_dict(self) -> dict:
        """The JSON object of this result; CSV writes the same fields as columns, so a field
        added here (say an abstention flag and its reason) reaches both."""
        trust = self.trust or {}
        return {
            "file": self.file,
            "status": "ok" if self.ok else "error",
            "label": self.label,
            "confidence": self.confidence,
            "raw_confidence": self.raw_confidence,
            "probabilities": self.probabilities,
            **{key: trust.get(key) for key in _TRUST_RECORD_FIELDS},
            "error": self.error,
            "notice": NOTICE,
        }

    @property
    def label(self) -> str | None:
        """The predicted class (None for a scan that could not be classified)."""
        return self.prediction.label if self.prediction else None

    @property
    def confidence(self) -> float | None:
        """The label's calibrated probability (the raw one for a model without calibration)."""
        if self.prediction is None:
            return None
        calibrated = self.calibrated_confidence
        return round(self.prediction.confidence if calibrated is None else calibrated, _DECIMALS)

    @property
    def raw_confidence(self) -> float | None:
        """The label's probability as the model gave it, before calibration."""
        return round(self.prediction.confidence, _DECIMALS) if self.prediction else None

    @property
    def probabilities(self) -> dict[str, float] | None:
        """Every class's raw probability."""
        if self.prediction is None:
            return None
        return {name: round(p, _DECIMALS) for name, p in self.prediction.probabilities.items()}

    @property
    def flag(self) -> str | None:
        """ok, uncertain or out_of_distribution (None when not classified)."""
        return (self.trust or {}).get("flag")

    @property
    def reason(self) -> str | None:
        """Why the scan was flagged (None when it was not)."""
        return (self.trust or {}).get("reason")


def display_name(path: Path) -> str:
    """The path as text that can always be printed (undecodable bytes become U+FFFD)."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class JsonLinesWriter:
    """One JSON object per scan per line, errors included (status "error")."""

    def __init__(self, stream: TextIO, class_names: tuple[str, ...], files: list[str]):
        self._stream = stream

    def write(self, result: ScanResult) -> None:
        # ASCII with \u escapes: a name holding U+2028 or U+0085 must not split the line for
        # readers that split on every Unicode line break, whatever stdout's encoding.
        self._stream.write(json.dumps(result.to_dict()) + "\n")
        self._stream.flush()

    def finish(self, classified: int, failed: int, interrupted: int = 0) -> None:
        """JSON lines need no footer: every object carries the notice."""


class CsvWriter:
    """A header, then one row per scan with the JSON record's fields (one column per class
    for the probabilities); the notice is a column so every row carries it."""

    def __init__(self, stream: TextIO, class_names: tuple[str, ...], files: list[str]):
        self._stream = stream
        self._class_names = class_names
        self._writer = csv.writer(stream, lineterminator="\n")
        self._writer.writerow(self._flatten(ScanResult(Path()).to_dict()))

    def write(self, result: ScanResult) -> None:
        self._writer.writerow(self._flatten(result.to_dict()).values())
        self._stream.flush()

    def finish(self, classified: int, failed: int, interrupted: int = 0) -> None:
        """Every row already carries the notice."""

    def _flatten(self, record: dict) -> dict:
        row = {}
        for key, value in record.items():
            if key == "probabilities":
                row.update({name: (value or {}).get(name) for name in self._class_names})
            elif isinstance(value, list):  # the prediction set's labels
                row[key] = "; ".join(value)
            else:
                row[key] = value
        return {printable(key): _cell(value) for key, value in row.items()}


def _cell(value) -> object:
    """A CSV cell: text from file names, files or a manifest with its control characters
    escaped (a raw ESC or CR would drive a terminal or split a row for naive readers)."""
    if value is None:
        return ""
    return printable(value) if isinstance(value, str) else value


class TableWriter:
    """Aligned columns for people; failed files are reported on stderr and in the footer."""

    def __init__(self, stream: TextIO, class_names: tuple[str, ...], files: list[str]):
        self._stream = stream
        self._class_names = class_names
        self._shown_names = [printable(name) for name in class_names]
        longest = max((len(printable(name)) for name in files), default=4)
        self._file_width = max(4, min(longest, _MAX_FILE_COLUMN))
        self._probability_widths = [max(len(name), 5) for name in self._shown_names]
        self._flagged: list[str] = []
        self._line(["file", "label", "confidence", "flag", *self._shown_names])

    def write(self, result: ScanResult) -> None:
        if not result.ok:  # on stderr, and counted in the footer
            return
        prediction = result.prediction
        trust = result.trust or {}
        flag = trust.get("flag") or "-"
        name = printable(result.file)
        if flag not in ("ok", "-"):
            self._flagged.append(f"  {name}: {flag}: {printable(str(trust.get('reason')))}")
        self._line(
            [
                name,
                printable(prediction.label),
                f"{result.confidence:.3f}",
                flag,
                *(f"{prediction.probabilities[name]:.3f}" for name in self._class_names),
            ]
        )

    def finish(self, classified: int, failed: int, interrupted: int = 0) -> None:
        summary = f"{classified} classified"
        if failed:
            summary += f", {failed} failed (reasons on stderr)"
        if interrupted:
            summary += f", {interrupted} not done (interrupted)"
        if self._flagged:
            summary += f"; {len(self._flagged)} flagged, do not rely on their labels"
            summary += ":\n" + "\n".join(self._flagged)
        self._stream.write(f"\n{summary}.\n{_CONFIDENCE_NOTE}\n{NOTICE}\n")
        self._stream.flush()

    def _line(self, cells: list[str]) -> None:
        file_cell = _shorten_left(cells[0], self._file_width).ljust(self._file_width)
        label_width = max(len("label"), *(len(name) for name in self._shown_names))
        probabilities = [
            cell.rjust(width) for cell, width in zip(cells[4:], self._probability_widths)
        ]
        flag_cell = cells[3].ljust(len("out_of_distribution"))
        row = [file_cell, cells[1].ljust(label_width), cells[2].rjust(10), flag_cell,
               *probabilities]
        self._stream.write("  ".join(row).rstrip() + "\n")
        self._stream.flush()


WRITERS = {"table": TableWriter, "json": JsonLinesWriter, "csv": CsvWriter}


class Progress:
    """A one-line counter on stderr, only when stderr is a terminal and the batch is big."""

    MIN_FILES = 10

    def __init__(self, stream: TextIO, total: int):
        self._stream = stream
        self._total = total
        self._enabled = total >= self.MIN_FILES and _is_terminal(stream)
        self._shown = False

    def update(self, done: int) -> None:
        if self._enabled:
            self._emit(f"\rclassifying {done}/{self._total}")
            self._shown = True

    def clear(self) -> None:
        """Erase the counter before anything else is printed to the terminal."""
        if self._shown:
            self._emit("\r\x1b[K")
            self._shown = False

    def _emit(self, text: str) -> None:
        with STDERR_LOCK:
            self._stream.write(text)
            self._stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _shorten_left(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]
