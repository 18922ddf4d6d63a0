"""The baseline: a CNN in the original hobby project's style, trained on the same data and budget.

Plain conv-conv-pool blocks with BatchNorm and Dropout, a dense head, Adam, no augmentation, no
schedule, no test-time averaging: about 600k parameters. It exists so the pipeline model's gain is
a ratio measured in the same run, not a claim.
"""
from __future__ import annotations

import time

import keras
import numpy as np

from modules import contract


def build_baseline() -> keras.Model:
    inputs = keras.Input(shape=contract.IMAGE_SHAPE, name="pixels_scaled")
    x = inputs
    for filters in (32, 64, 128):
        for _ in range(2):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            x = keras.layers.BatchNormalization()(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Dropout(0.25)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(160, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(contract.NUM_CLASSES, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="baseline_cnn")
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=False)  # as the original (Keras 2) trained: no XLA
    return model


def train_baseline(train_images: np.ndarray, train_labels: np.ndarray, eval_images: np.ndarray,
                   eval_labels: np.ndarray, epochs: int,
                   batch_size: int) -> tuple[keras.Model, float]:
    """Trains on uint8 images scaled to [0, 1]; returns the model and the training wall time."""
    keras.utils.set_random_seed(42)
    model = build_baseline()
    start = time.perf_counter()
    model.fit(train_images.astype("float32") / 255.0, train_labels, epochs=epochs,
              batch_size=batch_size, shuffle=True, verbose=2,
              validation_data=(eval_images.astype("float32") / 255.0, eval_labels))
    return model, time.perf_counter() - start
