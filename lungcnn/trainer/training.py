"""The fit loop: optimiser and schedule from the TrainConfig, best epoch by validation
accuracy, optional early stopping on validation AUC. Only train and validation data enter here."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from lungcnn.edge.contract import CLASS_NAMES
from lungcnn.trainer.config import TrainConfig
from lungcnn.trainer.dataset import DecodedScans
from lungcnn.trainer.pipeline import evaluation_dataset, steps_per_epoch, training_dataset


@dataclass(frozen=True)
class FitResult:
    model: keras.Model  # holds the best epoch's weights
    history: dict  # per-epoch lists, plus "best_epoch" (1-based)


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the highest validation accuracy (ties: the lower
    validation loss) and puts them back when training ends."""

    def __init__(self):
        super().__init__()
        self.best_key: tuple[float, float] | None = None
        self.best_epoch = 0
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        key = (logs["val_accuracy"], -logs["val_loss"])
        if self.best_key is None or key > self.best_key:
            self.best_key, self.best_epoch = key, epoch + 1
            self.best_weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def fit(
    build, config: TrainConfig, train: DecodedScans, val: DecodedScans, verbose: int = 2
) -> FitResult:
    keras.utils.set_random_seed(config.seed)
    # Same seed, same weights: makes the parallel tf.data augmentation draw its random numbers
    # in a fixed order (measured: no slowdown on CPU).
    tf.config.experimental.enable_op_determinism()
    model = build(config.input_size)
    steps = steps_per_epoch(len(train.samples), config.batch_size)
    model.compile(
        optimizer=_optimizer(config, steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[
            "accuracy",
            keras.metrics.AUC(name="auc", multi_label=True, num_labels=len(CLASS_NAMES)),
        ],
    )
    best = BestWeights()
    callbacks = [best]
    if config.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_auc", mode="max", patience=config.early_stopping_patience
            )
        )
    fitted = model.fit(
        training_dataset(
            train.images, train.labels, config.batch_size, config.augmentation, config.seed,
            weights=source_class_weights(train.samples) if config.balance_sources else None,
        ),
        validation_data=evaluation_dataset(val.images, val.labels, config.batch_size),
        epochs=config.epochs,
        callbacks=callbacks,
        shuffle=False,  # the dataset reshuffles itself every epoch
        verbose=verbose,
    )
    history = {name: [float(v) for v in values] for name, values in fitted.history.items()}
    history["best_epoch"] = best.best_epoch
    return FitResult(model, history)


def source_class_weights(samples) -> np.ndarray:
    """1 / (scans of the sample's source and class), scaled to mean 1."""
    keys = [(s.source, s.label) for s in samples]
    counts = {key: keys.count(key) for key in set(keys)}
    weights = np.array([1.0 / counts[key] for key in keys])
    return weights * (len(weights) / weights.sum())


def predict(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Softmax probabilities, (n, classes), for unaugmented raw-pixel images."""
    if len(images) == 0:
        return np.zeros((0, len(CLASS_NAMES)), np.float32)
    return model.predict(
        evaluation_dataset(images, np.zeros(len(images), np.int64), batch_size), verbose=0
    )


def _optimizer(config: TrainConfig, steps: int) -> keras.optimizers.Optimizer:
    learning_rate = config.learning_rate
    if config.lr_schedule == "cosine":
        warmup = config.warmup_epochs * steps
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else config.learning_rate,
            decay_steps=max(config.epochs * steps - warmup, 1),
            warmup_target=config.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    if config.weight_decay:
        return keras.optimizers.AdamW(learning_rate, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(learning_rate)
