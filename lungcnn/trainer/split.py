"""The train/validation split: per source and class, with duplicates kept on one side.
No TensorFlow here."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lungcnn.edge.contract import CLASS_NAMES
from lungcnn.trainer.dataset import Fingerprint, Sample, find_duplicates


def limit_per_class(samples: Sequence[Sample], limit: int | None) -> list[Sample]:
    """The first `limit` samples of each class (all of them when limit is None)."""
    if limit is None:
        return list(samples)
    kept: list[Sample] = []
    for label in range(len(CLASS_NAMES)):
        kept.extend([s for s in samples if s.label == label][:limit])
    return kept


def split_train_val(
    samples: Sequence[Sample],
    val_fraction: float = 0.2,
    seed: int = 0,
    groups: Sequence[Sequence[int]] | None = None,
) -> tuple[list[Sample], list[Sample]]:
    """Split stratified by source and class: round(val_fraction * n) of each stratum to
    validation (at least one, and at least one left for training when it has two or more).

    `groups` (lists of indices into `samples`, e.g. `duplicate_groups`) go to one side whole,
    counted in the stratum of their first member, so copies of one scan never straddle the
    split. Deterministic for a seed; both lists keep the input order."""
    rng = np.random.default_rng(seed)
    strata: dict[tuple[str, int], list[Sequence[int]]] = {}
    for group in groups if groups is not None else [[i] for i in range(len(samples))]:
        first = samples[group[0]]
        strata.setdefault((first.source, first.label), []).append(group)
    val_indices: set[int] = set()
    for key in sorted(strata):
        members = strata[key]
        size = sum(len(group) for group in members)
        count = min(max(1, round(val_fraction * size)), max(size - 1, 0))
        taken = 0
        for index in rng.permutation(len(members)):
            if taken >= count:
                break
            val_indices.update(members[index])
            taken += len(members[index])
    train = [s for i, s in enumerate(samples) if i not in val_indices]
    val = [s for i, s in enumerate(samples) if i in val_indices]
    return train, val


def duplicate_groups(prints: Sequence[Fingerprint]) -> list[list[int]]:
    """Indices of `prints` grouped so that exact and near duplicates share a group (the
    connected components of the duplicate pairs), in order of their first index."""
    parent = list(range(len(prints)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    names = {str(i): p for i, p in enumerate(prints)}
    for duplicate in find_duplicates(names):
        a, b = root(int(duplicate.first)), root(int(duplicate.second))
        parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(len(prints)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())
