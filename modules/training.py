"""TFX module file for the Tuner (`tuner_fn`) and the Trainer (`run_fn`).

Settings arrive through the components' `custom_config` (see pipeline/pipeline.py); hyperparameters
come from the Tuner, from an imported earlier search, or from modules.model.DEFAULT_HPARAMS.
"""
from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

import keras
import keras_tuner
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from modules import constants, data, export, model as model_lib

log = logging.getLogger("cifar10_tfx.training")

WARMUP_IMAGES = 4
WHITENING_IMAGES = 5000
SEED = 42


def search_space(hp: keras_tuner.HyperParameters) -> dict[str, Any]:
    """The Tuner's search space, kept around the region known to work for this network."""
    return {
        "base_filters": hp.Choice("base_filters", [48, 56, 64]),  # 64 -> 829k parameters
        "dropout": hp.Float("dropout", 0.0, 0.2, step=0.1),
        "learning_rate": hp.Float("learning_rate", 0.2, 0.8, sampling="log"),
        "weight_decay": hp.Choice("weight_decay", [5e-4, 1.3e-3, 3e-3]),
        "label_smoothing": hp.Choice("label_smoothing", [0.1, 0.2]),
    }


def _settings(custom_config: dict | None) -> dict[str, Any]:
    defaults = {"epochs": 18, "batch_size": 256, "steps_per_epoch": None,
                "test_time_augmentation": constants.TTA_NONE, "distribution_strategy": "default"}
    return {**defaults, **(custom_config or {})}


def _strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _datasets(fn_args, batch_size: int):
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    train = data.transformed_dataset(fn_args.train_files, tf_transform_output)
    evaluation = data.transformed_dataset(fn_args.eval_files, tf_transform_output)
    num_train = data.count(train)  # fills the in-memory cache too
    if num_train < batch_size:
        raise ValueError(f"The train split has {num_train} examples, fewer than one batch of "
                         f"{batch_size}; lower batch_size or add data.")
    return tf_transform_output, train, evaluation, num_train


def _whitening_sample(train: tf.data.Dataset) -> np.ndarray:
    return next(iter(train.batch(WHITENING_IMAGES).take(1)))[0].numpy()


def _new_model(hparams: dict[str, Any], whitening_images: np.ndarray, total_steps: int,
               batch_size: int) -> keras.Model:
    model = model_lib.build_model(hparams)
    model_lib.fit_whitening(model, whitening_images)
    return model_lib.compile_model(model, hparams, total_steps, batch_size)


def _steps_per_epoch(settings: dict, num_train: int) -> int:
    return int(settings["steps_per_epoch"] or num_train // int(settings["batch_size"]))


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    """KerasTuner Bayesian search on `eval` accuracy; each trial is a short real training run."""
    settings = _settings(fn_args.custom_config)
    batch_size = int(settings["batch_size"])
    _, train, evaluation, num_train = _datasets(fn_args, batch_size)
    steps = _steps_per_epoch(settings, num_train)
    epochs = int(settings["epochs"])
    whitening_images = _whitening_sample(train)

    def build(hp: keras_tuner.HyperParameters) -> keras.Model:
        return _new_model(search_space(hp), whitening_images, steps * epochs, batch_size)

    tuner = keras_tuner.BayesianOptimization(
        hypermodel=build,
        objective=keras_tuner.Objective("val_accuracy", direction="max"),
        max_trials=int(settings.get("max_trials", 6)),
        seed=SEED,
        directory=fn_args.working_dir,
        project_name="cifar10_tuning",
    )
    return tfx.components.TunerFnResult(
        tuner=tuner,
        fit_kwargs={
            "x": data.make_batches(train, batch_size, training=True, seed=SEED).repeat(),
            "validation_data": data.make_batches(evaluation, batch_size, training=False),
            "epochs": epochs,
            "steps_per_epoch": steps,
            "verbose": 2,
        })


def _hyperparameters(fn_args) -> dict[str, Any]:
    if not fn_args.hyperparameters:
        return dict(model_lib.DEFAULT_HPARAMS)
    found = keras_tuner.HyperParameters.from_config(fn_args.hyperparameters)
    return {**model_lib.DEFAULT_HPARAMS, **found.values}


def _sample_png_images(files, count: int) -> list[bytes]:
    dataset = tf.data.TFRecordDataset(data.expand_patterns(files), compression_type="GZIP")
    spec = {constants.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
    return [tf.io.parse_single_example(r, spec)[constants.IMAGE_KEY].numpy()
            for r in dataset.take(count)]


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains on `train`, validates on `eval` each epoch, exports the serving SavedModel."""
    keras.utils.set_random_seed(SEED)
    settings = _settings(fn_args.custom_config)
    batch_size = int(settings["batch_size"])
    hparams = _hyperparameters(fn_args)
    tf_transform_output, train, evaluation, num_train = _datasets(fn_args, batch_size)
    steps = _steps_per_epoch(settings, num_train)
    epochs = int(settings["epochs"])
    log.info("Training on %d images, %d epochs of %d steps, hyperparameters %s",
             num_train, epochs, steps, json.dumps(hparams, sort_keys=True))

    with _strategy(settings["distribution_strategy"]).scope():
        model = _new_model(hparams, _whitening_sample(train), steps * epochs, batch_size)
    model.fit(
        data.make_batches(train, batch_size, training=True, seed=SEED).repeat(),
        validation_data=data.make_batches(evaluation, batch_size, training=False),
        epochs=epochs,
        steps_per_epoch=steps,
        verbose=2,
        callbacks=[keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)],
    )
    export.export_serving_model(
        model, tf_transform_output, fn_args.serving_model_dir,
        _sample_png_images(fn_args.eval_files, WARMUP_IMAGES),
        tta=settings["test_time_augmentation"])
    summary = {"hyperparameters": hparams, "parameters": int(model.count_params()),
               "train_examples": num_train, "epochs": epochs, "steps_per_epoch": steps}
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, "training_summary.json"), "w") as f:
        f.write(json.dumps(summary, indent=2, sort_keys=True))
