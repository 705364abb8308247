"""What the trust checks read from a model's manifest, as frozen settings: the temperature
(the "calibration" section) and each signal's settings (the "trust" section), every number
checked when the model is loaded, so that a damaged manifest is a one-line ManifestError
instead of a check that silently switches off, or flags every scan."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from lungcnn.edge.manifest import ManifestError
from lungcnn.edge.trust.registry import SIGNALS
from lungcnn.edge.trust.signal import section
from lungcnn.edge.trust.stability import StabilitySettings
from lungcnn.edge.trust.temperature import temperature_of


@dataclass(frozen=True)
class TrustSettings:
    """The temperature and, by signal name, the settings of every signal that is on (a
    signal missing here is not fitted for this model); `fitted` is False for a model whose
    manifest has no trust section (then only stability is checked, with no threshold)."""

    temperature: float = 1.0
    signals: Mapping[str, object] = field(
        default_factory=lambda: {"stability": StabilitySettings()})
    fitted: bool = False

    @classmethod
    def from_manifest(cls, manifest: dict,
                      class_names: tuple[str, ...] | None = None) -> TrustSettings:
        """The manifest's calibration and trust sections (ManifestError when unusable);
        `class_names` defaults to the manifest's."""
        if not isinstance(manifest, dict):
            raise ManifestError("manifest must be an object")
        calibration, trust = section(manifest, "calibration"), section(manifest, "trust")
        _check_finite(calibration, "calibration")
        _check_finite(trust, "trust")
        if trust and not calibration:
            raise ManifestError("trust section without the calibration section it was "
                                "fitted with")
        if class_names is None:
            class_names = tuple(manifest.get("class_names") or ())
        temperature = temperature_of(calibration)
        signals = {}
        for signal in SIGNALS:
            settings = signal.settings(calibration, trust, class_names)
            if settings is not None:
                signals[signal.name] = settings
        return cls(temperature, signals, fitted=bool(trust))

    def of(self, name: str):
        """The settings of signal `name`, None when that signal is off."""
        return self.signals.get(name)

    @property
    def check_variants(self) -> bool:
        stability = self.of("stability")
        return stability is not None and stability.check_variants


def _check_finite(value, path: str) -> None:
    """Every number anywhere in a section is finite (JSON readers accept NaN and Infinity)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ManifestError(f"{path} holds {value}, not a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{path} {key}")
    elif isinstance(value, list):
        for item in value:
            _check_finite(item, path)
