"""Artifact types this project adds to TFX's standard ones."""
from tfx.types.artifact import Artifact


class TFLiteModel(Artifact):
    """A folder with model.tflite, labels.txt and metrics.json, made from a blessed SavedModel."""

    # KFP v2 wants custom types as <namespace>.<Name>, and its container entrypoint imports that
    # name as a class path: the top-level module cifar10.py re-exports this class.
    TYPE_NAME = "cifar10.TFLiteModel"


class BatchPredictions(Artifact):
    """A folder with predictions.csv and predictions.jsonl: one row per classified image."""

    TYPE_NAME = "cifar10.BatchPredictions"  # re-exported by cifar10.py, as TFLiteModel is
