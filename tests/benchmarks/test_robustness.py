"""benchmarks.robustness: the acquisition changes and label stability, on one real scan."""

from __future__ import annotations

import numpy as np
import pytest

from lungcnn.benchmarks.robustness import label_stability
from lungcnn.edge.acquisition import ACQUISITION_CHANGES, original
from lungcnn.edge.decode import read_grayscale

SIZE = 96
# "Close": at most an eighth of the 0-255 range on average, and still strongly correlated
# with the unchanged scan (the 5-degree rotation, with its black corners, is the farthest).
MAX_MEAN_ABS_DIFF = 32.0
MIN_CORRELATION = 0.85
# The 16-bit export of a full-range 8-bit scan maps back through the contract losslessly:
# it checks the decode path, so it may leave the pixels as they were (within rounding).
LOSSLESS = {"sixteen_bit"}


@pytest.fixture(scope="module")
def scan_path(dataset_dir):
    return dataset_dir / "train" / "Covid" / "01.jpeg"  # 640 px, full 0-255 range


@pytest.fixture(scope="module")
def gray(scan_path):
    return read_grayscale(scan_path)


@pytest.mark.parametrize("name", sorted(ACQUISITION_CHANGES))
def test_change_returns_a_model_input_close_to_the_original(gray, name):
    changed = ACQUISITION_CHANGES[name](gray, SIZE)
    assert changed.shape == (SIZE, SIZE, 1) and changed.dtype == np.uint8
    base = original(gray, SIZE).astype(np.float64)
    diff = np.abs(changed.astype(np.float64) - base)
    if name in LOSSLESS:
        assert diff.max() <= 1
    else:
        assert diff.max() > 0, f"{name} left the scan unchanged"
    assert diff.mean() <= MAX_MEAN_ABS_DIFF
    assert np.corrcoef(changed.ravel(), base.ravel())[0, 1] >= MIN_CORRELATION


def test_changes_leave_the_input_scan_untouched(gray):
    before = gray.copy()
    for change in ACQUISITION_CHANGES.values():
        change(gray, SIZE)
    assert np.array_equal(gray, before)


def test_constant_predictor_is_fully_stable(gray, scan_path):
    def constant_probabilities(batch):
        return np.tile([0.2, 0.5, 0.3], (len(batch), 1))

    shares = label_stability(constant_probabilities, [scan_path, gray[::2, ::2]], SIZE)
    assert shares == dict.fromkeys(ACQUISITION_CHANGES, 1.0)
    labels_only = label_stability(lambda batch: np.zeros(len(batch), int), [gray], SIZE)
    assert labels_only == dict.fromkeys(ACQUISITION_CHANGES, 1.0)


def test_a_predictor_that_reads_brightness_is_unstable_under_brightness(gray):
    # Label 1 when the input is brighter than halfway between the scan and its brighter copy.
    threshold = (original(gray, SIZE).mean() + ACQUISITION_CHANGES["brightness"](gray, SIZE).mean()) / 2

    def by_brightness(batch):
        return (batch.reshape(len(batch), -1).mean(axis=1) > threshold).astype(int)

    shares = label_stability(by_brightness, [gray], SIZE)
    assert set(shares) == set(ACQUISITION_CHANGES)
    assert all(0.0 <= share <= 1.0 for share in shares.values())
    assert shares["brightness"] == 0.0 and shares["jpeg_q50"] == 1.0


def test_given_baseline_gives_the_same_shares(gray):
    def by_brightness(batch):
        means = batch.reshape(len(batch), -1).mean(axis=1)
        return np.stack([means, 255 - means], axis=1)

    grays = [gray, gray[::3, ::3]]
    baseline = by_brightness(np.stack([original(g, SIZE) for g in grays]))
    assert label_stability(by_brightness, grays, SIZE, baseline=baseline) == label_stability(
        by_brightness, grays, SIZE
    )


def test_label_stability_needs_a_scan():
    with pytest.raises(ValueError, match="at least one scan"):
        label_stability(lambda batch: batch, [], SIZE)
