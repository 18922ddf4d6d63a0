"""ExampleValidator that stops the pipeline when the data has anomalies."""
from components.strict_example_validator.component import StrictExampleValidator

__all__ = ["StrictExampleValidator"]
