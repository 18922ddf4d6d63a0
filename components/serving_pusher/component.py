"""ServingPusher: TFX's Pusher contract (model + blessing -> PushedModel), pushed atomically."""
from __future__ import annotations

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.artifacts import TFLiteModel
from components.serving_pusher import executor


class ServingPusherSpec(ComponentSpec):
    PARAMETERS = {
        executor.SERVING_DIR_KEY: ExecutionParameter(type=str),
        executor.TFLITE_DIR_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
        executor.TFLITE_KEY: ChannelParameter(type=TFLiteModel, optional=True),
    }
    OUTPUTS = {executor.PUSHED_MODEL_KEY: ChannelParameter(type=standard_artifacts.PushedModel)}


class ServingPusher(base_component.BaseComponent):
    """Pushes a blessed model to `<serving_dir>/<version>/` and its .tflite to `<tflite_dir>/<version>/`.

    Unlike TFX's filesystem Pusher, a version folder appears only when complete (staging + rename),
    so a crash mid-push leaves nothing TF Serving would load.
    """

    SPEC_CLASS = ServingPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, model_blessing: types.BaseChannel,
                 serving_dir: str, tflite_model: Optional[types.BaseChannel] = None,
                 tflite_dir: Optional[str] = None):
        spec = ServingPusherSpec(
            model=model, model_blessing=model_blessing, tflite_model=tflite_model,
            serving_dir=serving_dir, tflite_dir=tflite_dir,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel))
        super().__init__(spec=spec)
