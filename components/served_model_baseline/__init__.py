"""The model TF Serving serves now, as the Evaluator's baseline, without an MLMD resolver."""
from components.served_model_baseline.component import BaselineEvaluator, ServedModelBaseline

__all__ = ["BaselineEvaluator", "ServedModelBaseline"]
