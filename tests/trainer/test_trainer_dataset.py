"""Dataset listing, the train/validation split, decoding and leak detection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lungcnn.edge.contract import CLASS_NAMES, load_scan
from lungcnn.trainer.config import TrainConfig
from lungcnn.trainer.dataset import (
    DatasetError,
    UnreadableScans,
    decode_scans,
    find_duplicates,
    label_of,
    leak_free_test,
    leaked_test_files,
    list_split,
    split_sha256,
)
from lungcnn.trainer.run import prepare_data
from lungcnn.trainer.split import limit_per_class, split_train_val


def test_vendored_counts_and_labels_follow_folders(dataset_dir):
    for split, expected in (("train", (111, 70, 70)), ("test", (26, 20, 20))):
        samples = list_split(dataset_dir, split)
        counts = Counter(s.label for s in samples)
        assert tuple(counts[label] for label in range(3)) == expected
        assert all(s.rel_path.split("/")[1] == CLASS_NAMES[s.label] for s in samples)
        assert all(s.rel_path.startswith(f"{split}/") for s in samples)
        assert all(label_of(s.rel_path) == s.label for s in samples)


def test_label_of_a_file_outside_the_classes_is_a_dataset_error():
    assert label_of("val/b/x.png", ["a", "b"]) == 1
    with pytest.raises(DatasetError, match="'Unknown' is not one of the classes"):
        label_of("train/Unknown/x.png")


def test_kaggle_layout_with_mixed_formats_and_sizes(kaggle_like_dataset):
    samples = list_split(kaggle_like_dataset, "train")
    assert len(samples) == 4 * len(CLASS_NAMES)  # notes.txt ignored, any extension case
    assert {Path(s.rel_path).suffix for s in samples} == {".jpeg", ".JPG", ".Png", ".png"}
    decoded = decode_scans(kaggle_like_dataset, samples, 96)
    assert decoded.images.shape == (len(samples), 96, 96, 1)
    assert decoded.images.dtype == np.uint8


@pytest.mark.parametrize("size", [64, 512])
def test_decoded_arrays_equal_the_edge_contract(kaggle_like_dataset, dataset_dir, size):
    for root in (kaggle_like_dataset, dataset_dir):
        samples = list_split(root, "test")[::7]
        decoded = decode_scans(root, samples, size)
        expected = np.stack([load_scan(root / s.rel_path, size) for s in samples])
        np.testing.assert_array_equal(decoded.images, expected)
        np.testing.assert_array_equal(decoded.labels, [s.label for s in samples])


def test_split_is_stratified_deterministic_and_disjoint(dataset_dir):
    pool = list_split(dataset_dir, "train")
    train, val = split_train_val(pool, 0.2, seed=0)
    assert split_train_val(pool, 0.2, seed=0) == (train, val)
    assert split_train_val(pool, 0.2, seed=1)[1] != val
    assert not {s.rel_path for s in train} & {s.rel_path for s in val}
    assert sorted(train + val, key=lambda s: s.rel_path) == sorted(pool, key=lambda s: s.rel_path)
    val_counts = Counter(s.label for s in val)
    pool_counts = Counter(s.label for s in pool)
    assert all(val_counts[label] == round(0.2 * pool_counts[label]) for label in range(3))


def test_small_classes_keep_one_file_on_each_side(dataset_dir):
    pool = limit_per_class(list_split(dataset_dir, "train"), 2)
    train, val = split_train_val(pool, 0.2, seed=0)
    assert (
        Counter(s.label for s in train)
        == Counter(s.label for s in val)
        == Counter({0: 1, 1: 1, 2: 1})
    )


def test_prepared_data_never_trains_on_test(dataset_dir, tmp_path):
    data = prepare_data([dataset_dir], TrainConfig(input_size=8), tmp_path / "data")
    lists = data.split_lists()
    assert all(p.startswith("train/") for p in lists["train"] + lists["val"])
    assert all(p.startswith("test/") for p in lists["test"])
    assert set(lists["test_dedup"]) < set(lists["test"])
    # Duplicates stay on one side of the split, without --dedup.
    train_hashes = {p.sha256 for p in data.train.fingerprints}
    assert not any(p.sha256 in train_hashes for p in data.val.fingerprints)
    assert len(split_sha256(lists)) == 64
    assert {s.source for s in data.val.samples} == {"base-covid", "base-pediatric"}


def test_exact_duplicates_match_sha256sums(sha256_duplicate_groups, vendored_fingerprints):
    found = [
        {d.first, d.second} for d in find_duplicates(vendored_fingerprints) if d.kind == "exact"
    ]
    assert sorted(map(sorted, found)) == sorted(map(sorted, sha256_duplicate_groups))
    train_test = [pair for pair in found if {p.split("/")[0] for p in pair} == {"train", "test"}]
    within_test = [pair for pair in found if all(p.startswith("test/") for p in pair)]
    within_train = [pair for pair in found if all(p.startswith("train/") for p in pair)]
    assert (len(train_test), len(within_test), len(within_train)) == (6, 1, 3)


def test_near_duplicates_catch_rewindowed_copies(vendored_fingerprints):
    near = {(d.first, d.second) for d in find_duplicates(vendored_fingerprints) if d.kind == "near"}
    assert ("test/Covid/0112.jpg", "train/Covid/090.jpeg") in near  # same scan, other contrast
    assert ("train/Covid/057.jpeg", "train/Covid/078.jpeg") in near
    # Follow-up scans of one child are different pictures, not copies.
    assert ("train/Viral Pneumonia/062.jpeg", "train/Viral Pneumonia/065.jpeg") not in near


def test_leak_free_test_drops_every_copy_of_a_train_file(dataset_dir, vendored_fingerprints):
    train = {k: v for k, v in vendored_fingerprints.items() if k.startswith("train/")}
    test = {k: v for k, v in vendored_fingerprints.items() if k.startswith("test/")}
    leaks = leaked_test_files(test, train)
    exact_leaks = {
        name for name, matches in leaks.items() if any(m.kind == "exact" for m in matches)
    }
    assert len(exact_leaks) == 6
    kept = {s.rel_path for s in leak_free_test(dataset_dir)}
    assert kept == set(test) - set(leaks)
    assert not kept & exact_leaks


def test_wrong_layout_and_unreadable_files_are_reported(tmp_path, corrupt_dataset):
    with pytest.raises(DatasetError, match="no such folder"):
        list_split(tmp_path / "missing", "train")
    (tmp_path / "flat" / "train" / "Covid").mkdir(parents=True)
    with pytest.raises(DatasetError, match="missing: Normal, Viral Pneumonia"):
        list_split(tmp_path / "flat", "train")
    with pytest.raises(UnreadableScans) as caught:
        decode_scans(corrupt_dataset, list_split(corrupt_dataset, "train"), 32)
    assert [rel for rel, _ in caught.value.failures] == ["train/Normal/broken.jpeg"]
