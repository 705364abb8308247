"""The scans calibrate fits on, decoded once, and what the model says about them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcnn.edge.acquisition import REACQUISITIONS, reacquisitions
from lungcnn.edge.decode import ScanError
from lungcnn.edge.model import Model, run_all
from lungcnn.trainer.dataset import label_of


def load_split(data_dir: Path, rel_paths: list[str], model: Model) -> list[tuple]:
    """(model input, label, colourfulness) per file, the input made once by the model's
    contract (`model.preprocessor`); the class is the parent folder's name."""
    items = []
    for rel in rel_paths:
        path = data_dir / rel
        label = label_of(rel, model.class_names)
        try:
            scan = model.preprocessor.decode(path)
        except ScanError as error:
            raise ScanError(f"{path}: {error}") from None
        items.append((model.model_input(scan.gray), label, scan.colourfulness))
    return items


def labels_of(items: list[tuple]) -> np.ndarray:
    return np.array([label for _, label, _ in items], dtype=int)


@dataclass(frozen=True)
class Outputs:
    """The model's outputs on scans: probabilities (scans, rows, classes) and features
    (scans, rows, dim) or None; row 0 is the scan, the others its re-acquisitions."""

    probabilities: np.ndarray
    features: np.ndarray | None
    variant_names: tuple[str, ...] = ()


def outputs_with_variants(model: Model, items: list[tuple]) -> Outputs:
    """Each scan and its re-acquisitions through the model as one batch."""
    rows = []
    for model_input, _, _ in items:
        rows.append(model.run(np.stack([model_input, *reacquisitions(model_input).values()])))
    features = None if rows[0][1] is None else np.stack([f for _, f in rows]).astype(np.float64)
    return Outputs(np.stack([p for p, _ in rows]).astype(np.float64), features,
                   tuple(REACQUISITIONS))


def outputs(model: Model, items: list[tuple]) -> Outputs:
    """The scans alone through the model, in batches."""
    probabilities, features = run_all(model, [model_input for model_input, _, _ in items])
    return Outputs(probabilities[:, None], None if features is None else features[:, None])
