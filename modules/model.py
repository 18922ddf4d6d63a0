"""The CIFAR-10 network: a small VGG-like CNN with BatchNorm throughout and Dropout before the head.

Keras 3 (`import keras`) is the project's only Keras; `tf.keras` is never used, so the model does not
depend on the TF_USE_LEGACY_KERAS switch that tensorflow-transform flips on import.
"""
from __future__ import annotations

from typing import Any, Mapping

import keras

from modules import constants

LOGIT_SCALE = 0.125

# Defaults used when neither tuning nor imported hyperparameters say otherwise.
DEFAULT_HPARAMS: dict[str, Any] = {
    "base_filters": 24,
    "dropout": 0.1,
    "learning_rate": 0.1,
    "weight_decay": 5e-4,
    "label_smoothing": 0.1,
}


def _conv_bn(x, filters: int, name: str):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def build_model(hparams: Mapping[str, Any] | None = None) -> keras.Model:
    """Builds (uncompiled) the classifier: float [N, 32, 32, 3] in [0, 1] -> 10 probabilities."""
    hp = {**DEFAULT_HPARAMS, **(hparams or {})}
    width = int(hp["base_filters"])
    inputs = keras.Input(shape=constants.IMAGE_SHAPE, name=constants.TRANSFORMED_IMAGE_KEY)
    # Centre the [0, 1] pixels; BatchNorm after every conv does the rest of the whitening.
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="centre")(inputs)
    x = _conv_bn(x, width, "stem")
    for stage, filters in enumerate((2 * width, 4 * width, 8 * width), start=1):
        x = _conv_bn(x, filters, f"stage{stage}a")
        x = keras.layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
        shortcut = x
        x = _conv_bn(x, filters, f"stage{stage}b")
        x = keras.layers.Add(name=f"stage{stage}_residual")([shortcut, x])
    x = keras.layers.GlobalMaxPooling2D(name="pool")(x)
    x = keras.layers.Dropout(float(hp["dropout"]), name="dropout")(x)
    logits = keras.layers.Dense(constants.NUM_CLASSES, name="logits")(x)
    # Max-pooled ReLU features are large; scaling the logits keeps the first steps from
    # producing confidently wrong, exploding outputs.
    logits = keras.layers.Rescaling(LOGIT_SCALE, name="logit_scale")(logits)
    outputs = keras.layers.Activation("softmax", name=constants.PROBABILITIES_OUTPUT)(logits)
    return keras.Model(inputs, outputs, name="cifar10_cnn")


def compile_model(model: keras.Model, hparams: Mapping[str, Any] | None,
                  total_steps: int) -> keras.Model:
    """SGD with Nesterov momentum on a one-cycle schedule, label smoothing, decoupled weight decay."""
    hp = {**DEFAULT_HPARAMS, **(hparams or {})}
    peak = float(hp["learning_rate"])
    warmup = max(1, int(0.25 * total_steps))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 10.0, decay_steps=max(1, total_steps - warmup),
        warmup_target=peak, warmup_steps=warmup, alpha=0.01)
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9, nesterov=True,
                                     weight_decay=float(hp["weight_decay"]))
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=float(hp["label_smoothing"])),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    return model
