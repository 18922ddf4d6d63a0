"""StrictExampleValidator: TFX's ExampleValidator whose execution fails on any anomaly."""
from tfx.components import ExampleValidator
from tfx.dsl.components.base import executor_spec

from components.strict_example_validator import executor


class StrictExampleValidator(ExampleValidator):
    """Same inputs, outputs and anomalies artifact as ExampleValidator; fails when data is bad."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
