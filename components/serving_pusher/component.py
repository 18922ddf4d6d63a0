"""ServingPusher: TFX's Pusher contract (model + blessing -> PushedModel), pushed atomically."""
from __future__ import annotations

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
        executor.HYPERPARAMETERS_SOURCE_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
        executor.TFLITE_KEY: ChannelParameter(type=TFLiteModel, optional=True),
        # The served model the Evaluator compared with: if another run pushed since, the
        # verdict is out of date and nothing is pushed.
        executor.BASELINE_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
        # What the model card is written from (any of them may be left out).
        executor.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation,
                                                  optional=True),
        executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics,
                                                  optional=True),
        executor.MODEL_RUN_KEY: ChannelParameter(type=standard_artifacts.ModelRun, optional=True),
        executor.HYPERPARAMETERS_KEY: ChannelParameter(type=standard_artifacts.HyperParameters,
                                                       optional=True),
    }
    OUTPUTS = {executor.PUSHED_MODEL_KEY: ChannelParameter(type=standard_artifacts.PushedModel)}


class ServingPusher(base_component.BaseComponent):
    """Pushes a blessed model to `<serving_dir>/<version>/` and its .tflite beside, same version.

    Unlike TFX's filesystem Pusher, a version folder appears only when complete (staging + rename),
    so a crash mid-push leaves nothing TF Serving would load. With the `baseline_model` the
    Evaluator compared with, it pushes only while that is still the newest version (another run
    may have pushed since). With an `evaluation`, it also writes
    the version's model card to `<serving_dir>/model_cards/<version>/`, in the same all-or-none
    publish; `statistics`, `model_run`, `hyperparameters` and `tflite_model` fill in its sections.
    """

    SPEC_CLASS = ServingPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, model_blessing: types.BaseChannel,
                 serving_dir: str, baseline_model: types.BaseChannel | None = None,
                 tflite_model: types.BaseChannel | None = None,
                 tflite_dir: str | None = None, evaluation: types.BaseChannel | None = None,
                 statistics: types.BaseChannel | None = None,
                 model_run: types.BaseChannel | None = None,
                 hyperparameters: types.BaseChannel | None = None,
                 hyperparameters_source: str | None = None):
        spec = ServingPusherSpec(
            model=model, model_blessing=model_blessing, baseline_model=baseline_model,
            tflite_model=tflite_model,
            serving_dir=serving_dir, tflite_dir=tflite_dir, evaluation=evaluation,
            statistics=statistics, model_run=model_run, hyperparameters=hyperparameters,
            hyperparameters_source=hyperparameters_source,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel))
        super().__init__(spec=spec)
