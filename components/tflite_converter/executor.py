"""TFLiteConverter executor: convert a blessed model, verify it against the float model, record it.

Calibration images come from `train` (never `test`); verification runs the LiteRT interpreter on
`test`, one image at a time as a phone would. If quantization fails or costs more accuracy than
allowed, the execution fails with the figures, so the Pusher (which consumes this output) never
runs.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np
import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components.tflite_converter import conversion
from modules import contract, data, export
from reports import tables

log = logging.getLogger("cifar10_tfx.tflite")

MODEL_KEY = "model"
EXAMPLES_KEY = "examples"
BLESSING_KEY = "model_blessing"
TFLITE_MODEL_KEY = "tflite_model"
MODE_KEY = "mode"
CALIBRATION_SAMPLES_KEY = "calibration_samples"
MAX_ACCURACY_DROP_KEY = "max_accuracy_drop"
VERIFY_SAMPLES_KEY = "verify_samples"


class AccuracyDropError(RuntimeError):
    """The converted model is worse than the float model by more than the allowed margin."""


def load_split_images(examples: types.Artifact, split: str,
                      limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 32, 32, 3] and int labels [N] from one split of the ExampleGen output."""
    split_uri = artifact_utils.get_split_uri([examples], split)
    return data.decoded_images([data.split_pattern(split_uri)], limit)


def savedmodel_probabilities(saved_model_dir: str, images: np.ndarray) -> tuple[np.ndarray, Any]:
    """The float SavedModel's probabilities through its pixels signature (batches of 256)."""
    signature = tf.saved_model.load(saved_model_dir).signatures[contract.PIXELS_SIGNATURE]
    batches = [signature(pixels=tf.constant(images[i:i + 256]))[contract.PROBABILITIES_OUTPUT]
               for i in range(0, len(images), 256)]
    return np.concatenate([b.numpy() for b in batches]), signature


def check_drop(metrics: dict[str, Any], max_drop: float) -> None:
    drop = metrics["float_savedmodel"]["accuracy"] - metrics["tflite"]["accuracy"]
    metrics["accuracy_drop"] = drop
    if drop > max_drop:
        raise AccuracyDropError(
            f"The {metrics['mode']} TFLite model reaches {metrics['tflite']['accuracy']:.2%} "
            f"accuracy on {metrics['verified_images']} test images, {drop * 100:.2f} points below "
            f"the float SavedModel's {metrics['float_savedmodel']['accuracy']:.2%}; the limit is "
            f"{max_drop * 100:.2f} points. Nothing was pushed. Raise the calibration sample count "
            f"(--tflite-calibration-samples), pick another mode (--tflite-mode) or relax the "
            f"limit (--tflite-max-accuracy-drop).")


class Executor(base_executor.BaseExecutor):
    """Converts, verifies and writes model.tflite, labels.txt, metrics.json and results.md."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        mode = conversion.check_mode(exec_properties[MODE_KEY])
        output = artifact_utils.get_single_instance(output_dict[TFLITE_MODEL_KEY])
        blessing = artifact_utils.get_single_instance(input_dict[BLESSING_KEY])
        if not blessing.get_int_custom_property(contract.BLESSED_PROPERTY):
            log.warning("The model is not blessed; no TFLite model was made.")
            output.set_int_custom_property(contract.TFLITE_CONVERTED_PROPERTY, 0)
            return

        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        keras_model, settings = export.load_keras_model(model.uri)
        tta = export.settings_serving_views(settings)
        calibration, _ = load_split_images(examples, contract.TRAIN_SPLIT,
                                           int(exec_properties[CALIBRATION_SAMPLES_KEY]))
        images, labels = load_split_images(examples, contract.TEST_SPLIT,
                                           exec_properties.get(VERIFY_SAMPLES_KEY) or None)
        log.info("Converting to TFLite (%s), calibrating on %d train images, verifying on %d "
                 "test images", mode, len(calibration), len(images))

        serving_dir = export.serving_model_dir(model.uri)
        reference, signature = savedmodel_probabilities(serving_dir, images)
        float_tflite = conversion.convert(keras_model, tta, contract.TFLITE_NONE)
        tflite = float_tflite if mode == contract.TFLITE_NONE else conversion.convert(
            keras_model, tta, mode, lambda: iter(calibration))

        metrics: dict[str, Any] = {
            "mode": mode,
            "verified_images": int(len(images)),
            "calibration_images": int(len(calibration)) if mode == contract.TFLITE_INT8 else 0,
            **tta.settings(),
            "float_savedmodel": {
                "accuracy": float((reference.argmax(1) == labels).mean()),
                "size_bytes": conversion.directory_size(serving_dir),
                "weights_bytes": conversion.float_weights_bytes(keras_model),
                "latency_ms": conversion.savedmodel_latency_ms(signature, images[0]),
            },
            "tflite_float32": conversion.verify(float_tflite, images, labels, reference),
            "tflite": conversion.verify(tflite, images, labels, reference),
        }
        metrics["size_ratio_vs_float_weights"] = (
            metrics["float_savedmodel"]["weights_bytes"] / metrics["tflite"]["size_bytes"])

        try:
            check_drop(metrics, float(exec_properties[MAX_ACCURACY_DROP_KEY]))
        except AccuracyDropError:
            # A failed execution's outputs are discarded, so the figures go to the log.
            log.warning("TFLite verification failed:\n%s", tables.tflite_results_markdown(metrics))
            raise
        self._write(output.uri, tflite, metrics)
        output.set_int_custom_property(contract.TFLITE_CONVERTED_PROPERTY, 1)
        output.set_string_custom_property(contract.TFLITE_MODE_PROPERTY, mode)
        output.set_float_custom_property(contract.TFLITE_ACCURACY_PROPERTY,
                                         metrics["tflite"]["accuracy"])
        log.info("TFLite %s: %.2f%% accuracy (float %.2f%%), %.1f KB, %.3f ms/image", mode,
                 metrics["tflite"]["accuracy"] * 100,
                 metrics["float_savedmodel"]["accuracy"] * 100,
                 metrics["tflite"]["size_bytes"] / 1024, metrics["tflite"]["latency_ms"])

    @staticmethod
    def _write(uri: str, tflite: bytes, metrics: dict[str, Any]) -> None:
        tf.io.gfile.makedirs(uri)
        with tf.io.gfile.GFile(os.path.join(uri, contract.TFLITE_FILE), "wb") as f:
            f.write(tflite)
        with tf.io.gfile.GFile(os.path.join(uri, contract.LABELS_FILE), "w") as f:
            f.write("\n".join(contract.CLASS_NAMES) + "\n")
        with tf.io.gfile.GFile(os.path.join(uri, contract.TFLITE_METRICS_FILE), "w") as f:
            json.dump(metrics, f, indent=2, sort_keys=True)
        with tf.io.gfile.GFile(os.path.join(uri, contract.TFLITE_RESULTS_FILE), "w") as f:
            f.write(tables.tflite_results_markdown(metrics))
