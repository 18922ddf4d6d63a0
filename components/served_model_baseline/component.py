"""ServedModelBaseline (serving base path -> Model) and the Evaluator that accepts an empty one."""
from __future__ import annotations

from tfx import types
from tfx.components import Evaluator
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.served_model_baseline import executor


class ServedModelBaselineSpec(ComponentSpec):
    PARAMETERS = {executor.SERVING_DIR_KEY: ExecutionParameter(type=str)}
    INPUTS = {}
    OUTPUTS = {executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}


class ServedModelBaseline(base_component.BaseComponent):
    """The newest SavedModel version in `serving_dir` (a runtime parameter) as a Model artifact.

    Empty, with no `served_version` property, on a first run; feed it to BaselineEvaluator.
    """

    SPEC_CLASS = ServedModelBaselineSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, serving_dir: str):
        super().__init__(spec=ServedModelBaselineSpec(
            serving_dir=serving_dir,
            model=types.Channel(type=standard_artifacts.Model)))


class BaselineEvaluator(Evaluator):
    """TFX's Evaluator; an empty baseline Model (a first run) counts as no baseline."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.EvaluatorExecutor)
