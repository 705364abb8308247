"""How often a model's label survives the acquisition changes a scan may go through before it
reaches a device (`edge.acquisition.ACQUISITION_CHANGES`: the transforms and constants the device's
own re-acquisition check uses). Only numpy and Pillow; never TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from lungcnn.edge.acquisition import ACQUISITION_CHANGES, Change, original
from lungcnn.edge.decode import read_grayscale


def label_stability(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    scans: Iterable[str | Path | np.ndarray],
    contract,
    changes: dict[str, Change] | None = None,
    baseline: np.ndarray | None = None,
) -> dict[str, float]:
    """Share of scans whose predicted label is unchanged by each acquisition change.

    `scans` are files or 2-D uint8 grayscale arrays; `contract` makes model inputs of them
    (a Preprocessor, or contract 1's input size). `predict_fn` takes a uint8 batch of
    shape (n, size, size, 1) and returns class probabilities (n, classes) or labels (n,).
    `baseline`, when given, is what `predict_fn` already returned for the unchanged scans
    (`original`), so they are not predicted a second time.
    """
    changes = ACQUISITION_CHANGES if changes is None else changes
    grays = [_as_gray(scan) for scan in scans]
    if not grays:
        raise ValueError("label_stability needs at least one scan")
    if baseline is None:
        baseline = predict_fn(np.stack([original(gray, contract) for gray in grays]))
    baseline = _as_labels(baseline)
    return {
        name: float(np.mean(_labels(predict_fn, [change(gray, contract) for gray in grays])
                            == baseline))
        for name, change in changes.items()
    }


def _labels(predict_fn: Callable[[np.ndarray], np.ndarray], inputs: Sequence[np.ndarray]) -> np.ndarray:
    return _as_labels(predict_fn(np.stack(inputs)))


def _as_labels(outputs) -> np.ndarray:
    outputs = np.asarray(outputs)
    return outputs.argmax(axis=1) if outputs.ndim == 2 else outputs.astype(int)


def _as_gray(scan: str | Path | np.ndarray) -> np.ndarray:
    if isinstance(scan, np.ndarray):
        gray = scan[:, :, 0] if scan.ndim == 3 and scan.shape[2] == 1 else scan
        if gray.ndim != 2 or gray.dtype != np.uint8:
            raise ValueError("a scan array must be 2-D uint8 grayscale")
        return gray
    return read_grayscale(scan)
