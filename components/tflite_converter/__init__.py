"""Custom TFX component: blessed SavedModel -> verified (int8) .tflite."""
from components.tflite_converter.component import TFLiteConverter

__all__ = ["TFLiteConverter"]
