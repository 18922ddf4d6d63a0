"""BatchPredictionsWriter: the BulkInferrer's answers as CSV and JSON Lines."""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from components.artifacts import BatchPredictions
from components.batch_predictions import executor


class BatchPredictionsWriterSpec(ComponentSpec):
    PARAMETERS: dict = {}
    INPUTS = {
        executor.INFERENCE_RESULT_KEY: ChannelParameter(type=standard_artifacts.InferenceResult),
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing,
                                                optional=True),
    }
    OUTPUTS = {executor.PREDICTIONS_KEY: ChannelParameter(type=BatchPredictions)}


class BatchPredictionsWriter(base_component.BaseComponent):
    """One row per image (file, class id, class name, ten probabilities), sorted by file.

    With the blessing connected, an empty result is explained: the BulkInferrer skips itself
    when the model is not blessed.
    """

    SPEC_CLASS = BatchPredictionsWriterSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, inference_result: types.BaseChannel,
                 model_blessing: types.BaseChannel | None = None):
        super().__init__(spec=BatchPredictionsWriterSpec(
            inference_result=inference_result, model_blessing=model_blessing,
            predictions=types.Channel(type=BatchPredictions)))
