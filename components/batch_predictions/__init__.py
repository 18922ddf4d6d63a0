"""Writes the BulkInferrer's PredictionLogs as predictions.csv and predictions.jsonl."""
from components.batch_predictions.component import BatchPredictionsWriter

__all__ = ["BatchPredictionsWriter"]
