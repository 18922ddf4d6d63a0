"""PreviousStatistics (record -> ExampleStatistics) and RecordStatistics (statistics -> record)."""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.previous_statistics import executor


class PreviousStatisticsSpec(ComponentSpec):
    PARAMETERS = {executor.RECORD_DIR_KEY: ExecutionParameter(type=str)}
    INPUTS = {}
    OUTPUTS = {executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics)}


class RecordStatisticsSpec(ComponentSpec):
    PARAMETERS = {executor.RECORD_DIR_KEY: ExecutionParameter(type=str)}
    INPUTS = {executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics)}
    OUTPUTS = {}


class PreviousStatistics(base_component.BaseComponent):
    """The statistics the last validated run recorded in `record_dir`; no splits on a first run."""

    SPEC_CLASS = PreviousStatisticsSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.PreviousExecutor)

    def __init__(self, record_dir: str):
        super().__init__(spec=PreviousStatisticsSpec(
            record_dir=record_dir,
            statistics=types.Channel(type=standard_artifacts.ExampleStatistics)))


class RecordStatistics(base_component.BaseComponent):
    """Records `statistics` in `record_dir`; make it run after the validator."""

    SPEC_CLASS = RecordStatisticsSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.RecordExecutor)

    def __init__(self, statistics: types.BaseChannel, record_dir: str):
        super().__init__(spec=RecordStatisticsSpec(statistics=statistics, record_dir=record_dir))
