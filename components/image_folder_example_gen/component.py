"""ImageFolderExampleGen: a FileBasedExampleGen over a folder of images, one `predict` split."""
from __future__ import annotations

from tfx import types
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from components.image_folder_example_gen import executor
from modules import contract


class ImageFolderExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        executor.RESIZE_KEY: ExecutionParameter(type=int, optional=True),
    }


class ImageFolderExampleGen(FileBasedExampleGen):
    """Examples (image bytes and file name) of the files directly in `input_base`.

    Being a FileBasedExampleGen, it keeps TFX's driver: the files are fingerprinted, so a cached
    run is reused only while the folder is unchanged. Wrong files are refused and listed.
    """

    SPEC_CLASS = ImageFolderExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, input_base: str, resize: bool = False):
        spec = ImageFolderExampleGenSpec(
            input_base=input_base,
            input_config=example_gen_pb2.Input(splits=[
                example_gen_pb2.Input.Split(name=contract.PREDICT_SPLIT, pattern="*")]),
            output_config=example_gen_pb2.Output(),
            custom_config=None,
            range_config=None,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            examples=types.Channel(type=standard_artifacts.Examples),
            **{executor.RESIZE_KEY: int(resize)},
        )
        base_component.BaseComponent.__init__(self, spec=spec)
