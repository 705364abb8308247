"""The scans a benchmark evaluates on: a run's test split and its leak-free subset.

Files are decoded once (edge.contract) and resized per model input size on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lungcnn.edge.contract import Preprocessor, model_input_of
from lungcnn.edge.decode import ScanError, read_grayscale
from lungcnn.trainer.dataset import (
    DatasetError,
    Sample,
    label_of,
    leak_free_test,
    list_split,
)
from lungcnn.trainer.split import limit_per_class


class TestSetError(ValueError):
    """The test scans cannot be found or read (one-line reason)."""


@dataclass(frozen=True)
class TestSet:
    root: Path
    files: tuple[str, ...]  # relative to root, "test/<class>/<name>"
    labels: np.ndarray  # indices into the model manifest's class_names
    leak_free: np.ndarray  # bool mask: True where the file duplicates no training file
    grays: tuple[np.ndarray, ...]  # 2-D uint8 scans, decoded at the scale the contract needs
    _inputs: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def paths(self) -> list[Path]:
        return [self.root / rel for rel in self.files]

    def inputs(self, contract: int | Preprocessor) -> np.ndarray:
        """(n, size, size, 1) uint8 model inputs under `contract` (a Preprocessor, or contract
        1's input size), exactly as the device makes them from `grays`."""
        if contract not in self._inputs:
            self._inputs[contract] = np.stack([model_input_of(g, contract) for g in self.grays])
        return self._inputs[contract]


def test_set_for_run(
    run_manifest: dict, data_dir: Path | None, scans_per_class: int | None,
    decode_side: int | None = None,
) -> TestSet:
    """With `data_dir`, every scan of DATA/test (leaks checked against DATA/train); else the
    run manifest's own test split and its `test_dedup` list (computed when absent)."""
    class_names = run_manifest["class_names"]
    if data_dir is not None:
        root = Path(data_dir)
        test = list_split(root, "test")
        leak_free = {s.rel_path for s in leak_free_test(root)}
    else:
        root = Path(run_manifest.get("data_dir") or "<none>")
        if not root.is_dir():
            raise TestSetError(f"dataset folder {root} of the run manifest not found (pass --data DIR)")
        split = run_manifest.get("split", {})
        test = _samples(split.get("test", []), class_names)
        dedup = split.get("test_dedup")
        leak_free = set(dedup) if dedup is not None else {s.rel_path for s in leak_free_test(root)}
    test = limit_per_class(test, scans_per_class)
    if not test:
        raise TestSetError(f"{root}: no test scans")
    return TestSet(
        root=root,
        files=tuple(s.rel_path for s in test),
        labels=np.array([s.label for s in test], dtype=np.int64),
        leak_free=np.array([s.rel_path in leak_free for s in test]),
        grays=tuple(_read(root, s.rel_path, decode_side) for s in test),
    )


def _samples(rel_paths: list[str], class_names: list[str]) -> list[Sample]:
    try:
        return [Sample(rel, label_of(rel, class_names)) for rel in rel_paths]
    except DatasetError as error:
        raise TestSetError(str(error)) from None


def _read(root: Path, rel_path: str, decode_side: int | None) -> np.ndarray:
    try:
        return read_grayscale(root / rel_path, decode_side)
    except ScanError as error:
        raise TestSetError(f"{root / rel_path}: {error}") from None
