"""Beam executor: a folder of PNG/JPEG/WebP images -> tf.Examples of one `predict` split.

Every file directly in the folder (local, gs://, any TensorFlow filesystem) is checked the way the
serving client checks files (serving.client.check_image): a 32x32 RGB PNG or JPEG is kept as it
is, a WebP is re-encoded as PNG, and other sizes are refused, or resized with `resize`. Refused
files are listed with their reasons in refused_images.json inside the Examples artifact and
counted in its `refused_images` property: the stage goes on with the rest.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.utils import proto_utils

from modules import contract
from serving.client import IMAGE_EXTENSIONS, MAX_FILE_BYTES, ImageError, check_image

log = logging.getLogger("cifar10_tfx.image_folder_example_gen")

RESIZE_KEY = "resize"
EXAMPLES_KEY = "examples"


def checked_image(path: str, resize: bool) -> bytes:
    """The bytes the model gets for one file, or ImageError naming it and why not."""
    if not path.lower().endswith(IMAGE_EXTENSIONS):
        raise ImageError(path, f"not an image file (accepted: {', '.join(IMAGE_EXTENSIONS)})")
    try:
        if tf.io.gfile.isdir(path):
            raise ImageError(path, "a folder (folders are not searched recursively)")
        size = tf.io.gfile.stat(path).length
        if size > MAX_FILE_BYTES:
            raise ImageError(path, f"file is {size:,} bytes, more than {MAX_FILE_BYTES:,}")
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    except tf.errors.OpError as error:
        raise ImageError(path, f"cannot read ({error.message})") from None
    return check_image(data, path, resize=resize)


def to_example(path: str, image: bytes) -> bytes:
    """A tf.Example with the image bytes (what serving_examples decodes) and its file name."""
    example = tf.train.Example(features=tf.train.Features(feature={
        contract.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        contract.FILE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[path.encode("utf-8")])),
    }))
    return example.SerializeToString(deterministic=True)


def scan_folder(input_base: str, pattern: str, resize: bool) -> tuple[list[str], list[dict]]:
    """(files that pass, [{"file", "reason"}] for those refused), sorted by name."""
    accepted, refused = [], []
    for path in sorted(tf.io.gfile.glob(os.path.join(input_base, pattern))):
        try:
            checked_image(path, resize)
            accepted.append(path)
        except ImageError as error:
            refused.append({"file": path, "reason": error.reason})
    return accepted, refused


def _example_of(path: str, resize: bool) -> bytes:
    return to_example(path, checked_image(path, resize))


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Checks every file before Beam starts; Beam then reads and encodes the accepted ones."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        raise NotImplementedError("GenerateExamplesByBeam is overridden")

    def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                               exec_properties: dict[str, Any]) -> dict[str, Any]:
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties["input_config"], input_config)
        resize = bool(exec_properties.get(RESIZE_KEY))
        result = {}
        self._refused: list[dict] = []
        for split in input_config.splits:
            files, refused = scan_folder(exec_properties["input_base"], split.pattern, resize)
            self._refused += refused
            for entry in refused:
                log.warning("Refused %s: %s", entry["file"], entry["reason"])
            if not files:
                raise ValueError(
                    f"No image to classify in {exec_properties['input_base']}: "
                    + ("; ".join(f"{e['file']}: {e['reason']}" for e in refused[:10])
                       or "the folder is empty"))
            log.info("Classifying %d image(s) of %s; %d file(s) refused", len(files),
                     exec_properties["input_base"], len(refused))
            result[split.name] = (pipeline
                                  | f"ListFiles[{split.name}]" >> beam.Create(files)
                                  | f"Spread[{split.name}]" >> beam.Reshuffle()
                                  | f"ToExample[{split.name}]" >> beam.Map(_example_of, resize))
        return result

    def Do(self, input_dict: dict, output_dict: dict, exec_properties: dict[str, Any]) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        with tf.io.gfile.GFile(os.path.join(examples.uri, contract.REFUSED_IMAGES_FILE),
                               "w") as f:
            f.write(json.dumps(self._refused, indent=2))
        examples.set_int_custom_property(contract.REFUSED_IMAGES_PROPERTY, len(self._refused))
