"""What every trust signal shares: the flags, the evidence a signal judges, its verdict, and
the checks that turn a manifest field into a number or array (or a ManifestError).

A signal is one module with a `SIGNAL = Signal(...)`: its name, the flag it raises, how it
reads its settings from the manifest, and how it checks one scan. `trust.registry` lists them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lungcnn.edge.lungfield import LungField
from lungcnn.edge.manifest import ManifestError

FLAG_OK = "ok"
FLAG_UNCERTAIN = "uncertain"
FLAG_OUT_OF_DISTRIBUTION = "out_of_distribution"


@dataclass(frozen=True)
class Evidence:
    """One scan as the signals see it: `calibrated` has one row for the scan, then one per
    re-acquisition variant (`variant_names`); `features` is the model's feature vector of the
    scan (None for a model without a features output)."""

    model_input: np.ndarray  # (size, size, 1) uint8
    colour: float  # colourfulness of the file the scan came from
    raw: np.ndarray  # (1 + variants, classes) model probabilities
    calibrated: np.ndarray  # the same after the temperature
    variant_names: tuple[str, ...]
    features: np.ndarray | None
    label: int  # argmax of calibrated[0]
    lung_field: LungField | None = None  # contract 2: where the lungs were found


@dataclass(frozen=True)
class Verdict:
    """A signal's measurement of one scan (`values`, for the assessment) and, when the scan
    fails the signal, the reason."""

    values: dict
    failure: str | None = None


@dataclass(frozen=True)
class Signal:
    name: str
    flag: str  # raised when the scan fails this signal
    # (calibration section, trust section, class count) -> its settings; None = not fitted
    settings: Callable[[dict, dict, int], object | None]
    check: Callable[[Evidence, object], Verdict]


# --- reading numbers from a manifest: finite, of the right type and shape ---


def section(parent: dict, key: str) -> dict:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ManifestError(f"{key} must be an object")
    return value


def number(value, name: str, *, low: float = -math.inf, high: float = math.inf,
           low_open: bool = False) -> float:
    """A finite JSON number (not a bool) in [low, high] (or (low, high] with `low_open`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ManifestError(f"{name} must be a number, not {_kind(value)}")
    value = float(value) if isinstance(value, float) or abs(value) < 2**63 else math.inf
    if not math.isfinite(value):
        raise ManifestError(f"{name} must be finite, not {value}")
    if low_open and value <= low:
        raise ManifestError(f"{name} {value:g} is not > {low:g}")
    if value < low or value > high:
        span = f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g}]"
        raise ManifestError(f"{name} {value:g} is not {span}")
    return value


def boolean(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ManifestError(f"{name} must be true or false, not {_kind(value)}")
    return value


def array(value, name: str, ndim: int) -> np.ndarray:
    """A finite float64 array of `ndim` dimensions, none of them empty."""
    try:
        values = np.asarray(value)
    except (TypeError, ValueError):  # ragged nested lists
        values = None
    if values is None or values.dtype.kind not in "iuf" or values.ndim != ndim or not values.size:
        raise ManifestError(f"{name} must be a non-empty {ndim}-D array of numbers")
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ManifestError(f"{name} holds a value that is not finite")
    return values


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__
