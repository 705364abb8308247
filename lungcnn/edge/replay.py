"""Replay features: the model's features of its own training scans, stored beside the model
(`X.tflite` -> `X.replay.npz`), so that `edge-classify adapt` can refit the classifier head on
a site's scans without forgetting the training sources. The training images themselves are
not shipped; `lungcnn bundle` writes the file from the int8 model's features output."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcnn.edge.manifest import write_bytes_atomic

REPLAY_SUFFIX = ".replay.npz"


class ReplayError(ValueError):
    """Replay features that are missing, unreadable or not those of this model (one line)."""


@dataclass(frozen=True)
class Replay:
    features: np.ndarray  # (scans, dim) float32
    labels: np.ndarray  # (scans,) class indices
    tflite_sha256: str  # of the model whose features these are


def replay_path(model_path: str | Path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + REPLAY_SUFFIX)


def write_replay(model_path: str | Path, replay: Replay) -> Path:
    """Write the replay features beside `model_path`, atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, features=replay.features.astype(np.float32),
                        labels=replay.labels.astype(np.int16),
                        tflite_sha256=np.array(replay.tflite_sha256))
    return write_bytes_atomic(replay_path(model_path), buffer.getvalue())


def read_replay(model_path: str | Path, tflite_sha256: str, dim: int, classes: int) -> Replay:
    """The replay features beside `model_path`, checked against the model (ReplayError)."""
    path = replay_path(model_path)
    try:
        with np.load(path, allow_pickle=False) as stored:
            replay = Replay(stored["features"].astype(np.float32),
                            stored["labels"].astype(np.int64), str(stored["tflite_sha256"]))
    except FileNotFoundError:
        raise ReplayError(f"{path}: no replay features beside the model (`lungcnn bundle` "
                          "writes them)") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ReplayError(f"{path}: unreadable replay features ({error})") from None
    if replay.tflite_sha256 != tflite_sha256:
        raise ReplayError(f"{path}: replay features of another model (tflite_sha256 differs)")
    features, labels = replay.features, replay.labels
    if (features.ndim != 2 or features.shape[1] != dim or labels.shape != (len(features),)
            or not len(labels) or not np.isfinite(features).all()
            or labels.min() < 0 or labels.max() >= classes):
        raise ReplayError(f"{path}: replay features do not fit the model ({dim} finite features "
                          f"and a label below {classes} per scan expected)")
    return replay
