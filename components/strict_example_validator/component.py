"""StrictExampleValidator: TFX's ExampleValidator whose execution fails on any anomaly."""
from __future__ import annotations

from tfx import types
from tfx.components import ExampleValidator
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import json_utils

from components.strict_example_validator import executor


class StrictExampleValidatorSpec(standard_component_specs.ExampleValidatorSpec):
    PARAMETERS = {
        **standard_component_specs.ExampleValidatorSpec.PARAMETERS,
        executor.LABEL_DRIFT_THRESHOLD_KEY: ExecutionParameter(type=float, optional=True),
    }
    INPUTS = {
        **standard_component_specs.ExampleValidatorSpec.INPUTS,
        executor.BASELINE_STATISTICS_KEY: ChannelParameter(
            type=standard_artifacts.ExampleStatistics, optional=True),
    }


class StrictExampleValidator(ExampleValidator):
    """ExampleValidator's inputs, outputs and anomalies artifact; fails when the data is bad.

    With `baseline_statistics` (the statistics of the previous run's data) and a
    `label_drift_threshold`, it also fails when a split's label distribution moved further than
    that L-infinity distance: data drift between two runs, caught before training.
    """

    SPEC_CLASS = StrictExampleValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, statistics: types.BaseChannel, schema: types.BaseChannel,
                 baseline_statistics: types.BaseChannel | None = None,
                 label_drift_threshold: float | None = None):
        spec = StrictExampleValidatorSpec(
            statistics=statistics, schema=schema, baseline_statistics=baseline_statistics,
            label_drift_threshold=label_drift_threshold,
            exclude_splits=json_utils.dumps([]),
            anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies))
        base_component.BaseComponent.__init__(self, spec=spec)
