"""The JSON manifest that travels with every model file.

A model `X.keras` or `X.tflite` has its manifest at `X.json` beside it (a trainer run
directory also keeps `manifest.json` next to `model.keras`). Readers take labels, input size
and preprocessing from here and never retype them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from lungcnn.edge.contract import CLASS_NAMES, ScanSpec

MANIFEST_FORMAT = "lungcnn-manifest/1"
# Libraries whose versions a model's numbers depend on, by distribution name.
_TRACKED_DISTRIBUTIONS = (
    "lungcnn", "tensorflow", "tensorflow-cpu", "keras", "ai-edge-litert", "tflite-runtime",
    "numpy", "pillow", "scikit-learn", "pydicom",
)


class ManifestError(ValueError):
    """A manifest that is missing, unreadable or does not match its model."""


def manifest_path(model_path: str | Path) -> Path:
    """Where the manifest of `model_path` lives: same folder, same stem, `.json`."""
    model_path = Path(model_path)
    beside = model_path.with_suffix(".json")
    run_manifest = model_path.parent / "manifest.json"
    if not beside.exists() and run_manifest.exists() and model_path.suffix == ".keras":
        return run_manifest
    return beside


def read_manifest(model_path: str | Path) -> dict:
    """Load and sanity-check the manifest of `model_path`; raises ManifestError."""
    path = manifest_path(model_path)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found beside the model") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{path}: unreadable manifest ({error})") from None
    except RecursionError:
        raise ManifestError(f"{path}: unreadable manifest (nested too deeply)") from None
    _check_manifest(path, manifest)
    return manifest


def _check_manifest(path: Path, manifest: dict) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{path}: not a lungcnn manifest (format != {MANIFEST_FORMAT})")
    names = manifest.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ManifestError(f"{path}: class_names missing or not a list of strings")
    if len(set(names)) != len(names):
        raise ManifestError(f"{path}: class_names has duplicates")
    model_input = manifest.get("input")
    size = model_input.get("size") if isinstance(model_input, dict) else None
    if not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
        raise ManifestError(f"{path}: input.size missing or not a positive integer")


def write_json_atomic(path: str | Path, payload: dict) -> Path:
    """Write JSON so that a killed process never leaves a truncated file under `path`."""
    text = json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n"
    return write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o644)  # mkstemp's 0600 would hide models from other users
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def library_versions() -> dict[str, str]:
    """Python and the installed tracked libraries (TensorFlow as "tensorflow" whichever wheel)."""
    import platform  # these two only when writing a manifest, not on a device's start-up
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in _TRACKED_DISTRIBUTIONS:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        versions["tensorflow" if name == "tensorflow-cpu" else name] = version
    return versions


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def base_manifest(model_file: str | Path, *, size: int, kind: str,
                  spec: ScanSpec | None = None) -> dict:
    """The fields every manifest carries (the input contract: `spec`, default contract 1 at
    `size`); stages add their own sections to it."""
    return {
        "format": MANIFEST_FORMAT,
        "kind": kind,
        "model_file": Path(model_file).name,
        "class_names": list(CLASS_NAMES),
        "input": (spec or ScanSpec(size)).to_json(),
    }


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
