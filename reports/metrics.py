"""The one reader of TFMA results and the figures derived from predictions.

Overall metrics, accuracy and the confusion matrix of an Evaluator output, and per-class
precision, recall and F1 from any confusion matrix (the run report's and the benchmark's alike).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from modules import contract

ACCURACY = "sparse_categorical_accuracy"  # TFMA's names of the Keras metrics the Evaluator runs
CROSS_ENTROPY = "sparse_categorical_crossentropy"
EXAMPLE_COUNT = "example_count"
DIFF_SUFFIX = "_diff"  # TFMA's name of a metric's change vs. the baseline model
EVAL_CONFIG_FILE = "eval_config.json"  # written by TFX's Evaluator next to the metrics
CANDIDATE_MODEL = "candidate"  # with a baseline, TFX names the two models candidate and baseline


def evaluation_config(evaluation_uri: str) -> dict:
    """The Evaluator's eval_config.json: the config it applied and the model locations."""
    import tensorflow as tf

    path = os.path.join(evaluation_uri, EVAL_CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        return json.loads(f.read())


def load_evaluation(evaluation_uri: str):
    """The TFMA EvalResult of the evaluated model (the candidate when a baseline was compared)."""
    import tensorflow_model_analysis as tfma

    locations = evaluation_config(evaluation_uri).get("modelLocations", {})
    model_name = CANDIDATE_MODEL if CANDIDATE_MODEL in locations else None
    return tfma.load_eval_result(evaluation_uri, model_name=model_name)


def overall_metrics(eval_result) -> dict[str, float]:
    """name -> value of the overall slice's unkeyed metrics (accuracy, loss, count, diffs)."""
    found = {}
    for slice_key, metrics in eval_result.slicing_metrics:
        if slice_key != ():
            continue
        for output in metrics.values():
            for sub_key, values in output.items():
                if sub_key:
                    continue
                for name, value in values.items():
                    if isinstance(value, dict) and "doubleValue" in value:
                        found[name] = float(value["doubleValue"])
    return found


def evaluation_accuracy(evaluation_uri: str) -> float | None:
    """Overall test accuracy from a TFMA Evaluator output folder (None if it holds none)."""
    return overall_metrics(load_evaluation(evaluation_uri)).get(ACCURACY)


def confusion_from_plots(eval_result,
                         num_classes: int = contract.NUM_CLASSES) -> np.ndarray | None:
    """The overall-slice MultiClassConfusionMatrixPlot as a [true, predicted] count matrix."""
    for slice_key, plots in eval_result.plots:
        if slice_key != ():
            continue
        for output in plots.values():
            for sub in output.values():
                plot = sub.get("multiClassConfusionMatrixAtThresholds")
                if not plot or not plot.get("matrices"):
                    continue
                chosen = min(plot["matrices"], key=lambda m: abs(m.get("threshold", 0.0)))
                matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
                for entry in chosen.get("entries", []):
                    actual = int(entry.get("actualClassId", 0))
                    predicted = int(entry.get("predictedClassId", 0))
                    if 0 <= actual < num_classes and 0 <= predicted < num_classes:
                        matrix[actual, predicted] += int(round(entry.get("numWeightedExamples",
                                                                         0.0)))
                return matrix
    return None


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int],
                     num_classes: int = contract.NUM_CLASSES) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def per_class_metrics(matrix: np.ndarray) -> list[dict]:
    """Precision, recall, F1 and support for each class, from a confusion matrix."""
    rows = []
    for index, name in enumerate(contract.CLASS_NAMES[:len(matrix)]):
        true_positive = matrix[index, index]
        predicted = matrix[:, index].sum()
        actual = matrix[index, :].sum()
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": name, "precision": float(precision), "recall": float(recall),
                     "f1": float(f1), "support": int(actual)})
    return rows
