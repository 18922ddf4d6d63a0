"""TFLiteConverter: a custom TFX component in the standard spec/executor shape."""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.artifacts import TFLiteModel
from components.tflite_converter import conversion, executor
from modules import contract


class TFLiteConverterSpec(ComponentSpec):
    PARAMETERS = {
        executor.MODE_KEY: ExecutionParameter(type=str),
        executor.CALIBRATION_SAMPLES_KEY: ExecutionParameter(type=int),
        executor.MAX_ACCURACY_DROP_KEY: ExecutionParameter(type=float),
        executor.VERIFY_SAMPLES_KEY: ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
    }
    OUTPUTS = {executor.TFLITE_MODEL_KEY: ChannelParameter(type=TFLiteModel)}


class TFLiteConverter(base_component.BaseComponent):
    """Converts a blessed model to .tflite (int8 by default) and verifies it on `test`.

    TFX's own TFLite rewriter cannot make full-integer models with uint8 input/output, hence this
    component. Its output feeds the Pusher, which pushes it beside the SavedModel, same version.
    """

    SPEC_CLASS = TFLiteConverterSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel,
                 model_blessing: types.BaseChannel, mode: str = contract.TFLITE_INT8,
                 calibration_samples: int = 500, max_accuracy_drop: float = 0.01,
                 verify_samples: int | None = None):
        conversion.check_mode(mode)
        spec = TFLiteConverterSpec(
            model=model, examples=examples, model_blessing=model_blessing, mode=mode,
            calibration_samples=calibration_samples, max_accuracy_drop=max_accuracy_drop,
            verify_samples=verify_samples,
            tflite_model=types.Channel(type=TFLiteModel))
        super().__init__(spec=spec)
