"""The tf.data pipeline feeds the model exactly the edge contract's pixels; augmentation
stays in the pipeline and keeps the raw 0-255 range."""

from __future__ import annotations

import numpy as np
import pytest

from lungcnn.edge.contract import load_scan
from lungcnn.trainer.config import Augmentation
from lungcnn.trainer.dataset import decode_scans, list_split

tf = pytest.importorskip("tensorflow")
from lungcnn.trainer.pipeline import evaluation_dataset, training_dataset  # noqa: E402

ACQUISITION = Augmentation(
    zoom=0.0,
    rotation_degrees=0.0,
    shift=0.0,
    brightness=0.2,
    contrast=0.3,
    blur_probability=1.0,
    downscale_probability=1.0,
    jpeg_probability=1.0,
)


@pytest.fixture(scope="module")
def real_scans(dataset_dir):
    samples = list_split(dataset_dir, "train")[::25]
    return dataset_dir, samples, decode_scans(dataset_dir, samples, 64)


def _images(dataset) -> np.ndarray:
    return np.concatenate([x.numpy() for x, _ in dataset])


def test_evaluation_pipeline_is_exactly_load_scan(real_scans):
    root, samples, decoded = real_scans
    produced = _images(evaluation_dataset(decoded.images, decoded.labels, 4))
    expected = np.stack([load_scan(root / s.rel_path, 64) for s in samples]).astype(np.float32)
    np.testing.assert_array_equal(produced, expected)  # raw 0-255: no scaling before the model
    labels = np.concatenate(
        [y.numpy() for _, y in evaluation_dataset(decoded.images, decoded.labels, 4)]
    )
    np.testing.assert_array_equal(labels.argmax(axis=1), decoded.labels)


def test_unaugmented_training_pipeline_only_shuffles(real_scans):
    _, _, decoded = real_scans
    produced = _images(training_dataset(decoded.images, decoded.labels, 4, Augmentation.none(), 0))
    assert produced.max() > 1  # the Rescaling layer in the model does the only scaling
    key = lambda images: sorted(image.tobytes() for image in images)  # noqa: E731
    assert key(produced) == key(decoded.images.astype(np.float32))


FILM_AND_NOISE = Augmentation(zoom=0.0, rotation_degrees=0.0, shift=0.0, gamma=0.5, noise=0.03)


@pytest.mark.parametrize(
    "augmentation", [Augmentation(), ACQUISITION, FILM_AND_NOISE],
    ids=["reference", "acquisition", "gamma-noise"]
)
def test_augmentation_changes_pixels_within_range(real_scans, augmentation):
    _, _, decoded = real_scans
    tf.keras.utils.set_random_seed(0)
    dataset = training_dataset(decoded.images, decoded.labels, 4, augmentation, 0)
    first, second = _images(dataset), _images(dataset)
    assert first.shape == decoded.images.shape and first.dtype == np.float32
    assert 0 <= first.min() and first.max() <= 255
    assert not np.array_equal(first, second)  # fresh randomness every epoch


def test_model_sees_the_same_pixels_as_the_edge(real_scans):
    from lungcnn.trainer.architectures import ARCHITECTURES

    root, samples, decoded = real_scans
    model = ARCHITECTURES["reference"].build(64)
    through_pipeline = model.predict(
        evaluation_dataset(decoded.images, decoded.labels, 4), verbose=0
    )
    raw = np.stack([load_scan(root / s.rel_path, 64) for s in samples])
    np.testing.assert_allclose(model.predict(raw, verbose=0), through_pipeline, rtol=0, atol=1e-6)
