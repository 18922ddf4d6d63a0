"""Cifar10ExampleGen: a FileBasedExampleGen over the binary batches, with a fixed eval slice."""
from __future__ import annotations

from tfx import types
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from components.cifar10_example_gen import executor
from modules import contract


class Cifar10ExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        executor.EVAL_FRACTION_KEY: ExecutionParameter(type=float),
    }


class Cifar10ExampleGen(FileBasedExampleGen):
    """Emits `train`, `eval` (last eval_fraction of each training batch) and `test` splits.

    Being a FileBasedExampleGen, it keeps TFX's driver: the input files are fingerprinted, so a
    cached run is reused only while the data is unchanged.
    """

    SPEC_CLASS = Cifar10ExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, input_base: str, eval_fraction: float = 0.1,
                 train_pattern: str | None = None, test_pattern: str | None = None):
        train_pattern = train_pattern or contract.TRAIN_PATTERN
        input_config = example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name=contract.TRAIN_SPLIT, pattern=train_pattern),
            example_gen_pb2.Input.Split(name=contract.EVAL_SPLIT, pattern=train_pattern),
            example_gen_pb2.Input.Split(name=contract.TEST_SPLIT,
                                        pattern=test_pattern or contract.TEST_PATTERN),
        ])
        spec = Cifar10ExampleGenSpec(
            input_base=input_base,
            input_config=input_config,
            output_config=example_gen_pb2.Output(),
            custom_config=None,
            range_config=None,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            examples=types.Channel(type=standard_artifacts.Examples),
            **{executor.EVAL_FRACTION_KEY: eval_fraction},
        )
        base_component.BaseComponent.__init__(self, spec=spec)
