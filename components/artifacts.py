"""Artifact types this project adds to TFX's standard ones."""
from tfx.types.artifact import Artifact


class TFLiteModel(Artifact):
    """A folder with model.tflite, labels.txt and metrics.json, made from a blessed SavedModel."""

    TYPE_NAME = "cifar10.TFLiteModel"  # KFP v2 wants custom types as <namespace>.<Name>
