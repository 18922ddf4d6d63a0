"""Beam executor: CIFAR-10 binary batch files -> tf.Examples, split into train / eval / test.

Each example holds the image as PNG bytes (lossless, about 2.3 KB instead of 12 KB of floats, and
the very encoding serving clients send, so training and serving decode images with the same op),
its height/width/channels (so the schema can reject a wrong-sized image) and the int64 label.
`eval` is a fixed slice of every training batch file (its last `eval_fraction` of records):
deterministic, so tuning scores and caches stay comparable between runs.
"""
from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import tensorflow as tf
from PIL import Image
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2
from tfx.utils import proto_utils

from modules import cifar10_binary, contract

EVAL_FRACTION_KEY = "eval_fraction"
# Which slice (fraction of records, start inclusive, end exclusive) of each file a split takes.
Slice = tuple[float, float]


def split_slices(eval_fraction: float) -> dict[str, Slice]:
    cut = 1.0 - eval_fraction
    return {contract.TRAIN_SPLIT: (0.0, cut), contract.EVAL_SPLIT: (cut, 1.0),
            contract.TEST_SPLIT: (0.0, 1.0)}


def slice_bounds(count: int, fraction: Slice) -> tuple[int, int]:
    """Record indices [start, end) of a file of `count` records that a fraction range covers."""
    return int(round(count * fraction[0])), int(round(count * fraction[1]))


def to_example(label: int, image) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="PNG")
    height, width, channels = image.shape

    def int_feature(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    example = tf.train.Example(features=tf.train.Features(feature={
        contract.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[buffer.getvalue()])),
        contract.HEIGHT_KEY: int_feature(height),
        contract.WIDTH_KEY: int_feature(width),
        contract.CHANNELS_KEY: int_feature(channels),
        contract.LABEL_KEY: int_feature(label),
    }))
    return example.SerializeToString(deterministic=True)


def read_slice(path: str, fraction: Slice) -> Iterator[bytes]:
    """Serialized examples for the records of one file that fall in `fraction`."""
    start, end = slice_bounds(cifar10_binary.check_structure(path), fraction)
    for record in cifar10_binary.read_records(path):
        if start <= record.index < end:
            yield to_example(record.label, record.image)


def matching_files(input_base: str, pattern: str) -> list[str]:
    """Files of a split, each checked for whole records before any Beam work starts."""
    files = sorted(tf.io.gfile.glob(os.path.join(input_base, pattern)))
    if not files:
        raise FileNotFoundError(
            f"No CIFAR-10 batch files match {os.path.join(input_base, pattern)}. Point the data "
            f"directory at the folder that holds cifar-10-batches-bin/ (the unpacked official "
            f"cifar-10-binary.tar.gz).")
    for path in files:
        cifar10_binary.check_structure(path)  # raises Cifar10FormatError naming the file
    return files


def split_record_count(files: list[str], fraction: Slice) -> int:
    """How many records a split takes from its (already structure-checked) files."""
    total = 0
    for path in files:
        start, end = slice_bounds(cifar10_binary.check_structure(path), fraction)
        total += end - start
    return total


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _FilesToExamples(pipeline: beam.Pipeline, files: list[str], fraction: Slice):
    return (pipeline
            | "ListFiles" >> beam.Create(files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadRecords" >> beam.FlatMap(read_slice, fraction))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _BinaryBatchesToExamples(pipeline: beam.Pipeline, exec_properties: dict[str, Any],
                             split_pattern: str):
    """TFX's per-split hook: every record of the files matching the pattern."""
    files = matching_files(exec_properties["input_base"], split_pattern)
    return pipeline | _FilesToExamples(files, (0.0, 1.0))


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Reads `cifar-10-batches-bin/*.bin`; the eval slice is taken per file, by record position."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _BinaryBatchesToExamples

    def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                               exec_properties: dict[str, Any]) -> dict[str, Any]:
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties["input_config"], input_config)
        slices = split_slices(float(exec_properties.get(EVAL_FRACTION_KEY) or 0.1))
        result = {}
        for split in input_config.splits:
            # Every check happens here, before Beam starts: errors name the file or the split.
            files = matching_files(exec_properties["input_base"], split.pattern)
            fraction = slices.get(split.name, (0.0, 1.0))
            if split_record_count(files, fraction) == 0:
                raise ValueError(
                    f"Split '{split.name}' would be empty: it takes records {fraction[0]:.0%} to "
                    f"{fraction[1]:.0%} of each of {len(files)} file(s) matching "
                    f"{split.pattern}, which hold too few records. Add data or change "
                    f"eval_fraction.")
            result[split.name] = (pipeline | f"InputToRecord[{split.name}]"
                                  >> _FilesToExamples(files, fraction))
        return result
