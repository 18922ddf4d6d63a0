"""Reads the BulkInferrer's PredictionLogs and writes one row per image, CSV and JSON Lines.

The rows have the columns `cifar10-tfx predict` writes (serving.local_models.write_predictions):
file, class_id, class_name and the ten probabilities, sorted by file. When the BulkInferrer
skipped itself (the model was not blessed, so it wrote no logs), the files are written empty
apart from the CSV header, the artifact's `predictions` count is 0 and the reason is logged.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from modules import contract
from serving.client import Prediction
from serving.local_models import write_predictions

log = logging.getLogger("cifar10_tfx.batch_predictions")

INFERENCE_RESULT_KEY = "inference_result"
BLESSING_KEY = "model_blessing"
PREDICTIONS_KEY = "predictions"


def predictions_from_logs(pattern: str) -> list[Prediction]:
    """Predictions of every PredictionLog in the TFRecord files matching `pattern`, by file."""
    found = []
    files = tf.io.gfile.glob(pattern)
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP") if files else []:
        predict = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log
        inputs = predict.request.inputs[contract.EXAMPLES_INPUT].string_val
        probabilities = tf.make_ndarray(predict.response.outputs[contract.PROBABILITIES_OUTPUT])
        probabilities = probabilities.reshape(len(inputs), contract.NUM_CLASSES)
        for serialized, row in zip(inputs, probabilities, strict=True):
            example = tf.train.Example.FromString(serialized)
            source = example.features.feature[contract.FILE_KEY].bytes_list.value[0].decode()
            class_id = int(np.argmax(row))
            found.append(Prediction(class_id, contract.CLASS_NAMES[class_id],
                                    [float(p) for p in row], source))
    return sorted(found, key=lambda p: str(p.source))


class Executor(base_executor.BaseExecutor):
    """InferenceResult (PredictionLogs) -> BatchPredictions (predictions.csv, .jsonl)."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        result = artifact_utils.get_single_instance(input_dict[INFERENCE_RESULT_KEY])
        output = artifact_utils.get_single_instance(output_dict[PREDICTIONS_KEY])
        predictions = predictions_from_logs(os.path.join(result.uri, "*.gz"))
        blessings = input_dict.get(BLESSING_KEY) or []
        if not predictions and blessings and not blessings[0].get_int_custom_property(
                contract.BLESSED_PROPERTY):
            log.warning("No batch predictions: the model is not blessed (see %s), so the "
                        "BulkInferrer skipped itself.", blessings[0].uri)
        tf.io.gfile.makedirs(output.uri)  # KFP's launcher makes only the folder above it
        for name, output_format in ((contract.PREDICTIONS_CSV, "csv"),
                                    (contract.PREDICTIONS_JSONL, "jsonl")):
            with tf.io.gfile.GFile(os.path.join(output.uri, name), "w") as f:
                write_predictions(predictions, output_format, f)
        output.set_int_custom_property(contract.PREDICTIONS_COUNT_PROPERTY, len(predictions))
        log.info("Wrote %d prediction(s) to %s", len(predictions), output.uri)
