"""Exports the trained Keras model as a SavedModel that TF Serving, TFMA and batch jobs all call.

The Transform graph travels inside the SavedModel, so every signature decodes and scales images with
the same code that prepared the training data. Signatures (names in modules.constants):
  serving_default   image_bytes: string [N], PNG or JPEG (REST clients send {"b64": ...})
  serving_pixels    pixels: uint8 [N, 32, 32, 3]
  serving_examples  examples: string [N], serialized tf.Example (TFMA, batch inference)
Each returns probabilities [N, 10], class_ids [N] and class_names [N].
"""
from __future__ import annotations

import os
from typing import Sequence

import tensorflow as tf

from modules import constants

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


class ServingModule(tf.Module):
    """Holds the model and the Transform layer so tf.saved_model.save tracks both."""

    def __init__(self, model, tf_transform_output, flip_averaging: bool):
        super().__init__()
        self.model = model
        self.tft_layer = tf_transform_output.transform_features_layer()
        self._raw_spec = {k: v for k, v in tf_transform_output.raw_feature_spec().items()
                          if k != constants.LABEL_KEY}
        self._flip_averaging = flip_averaging
        self._class_names = tf.constant(constants.CLASS_NAMES)

    def _predict_from_raw(self, raw_features: dict) -> dict:
        images = self.tft_layer(raw_features)[constants.TRANSFORMED_IMAGE_KEY]
        probabilities = self.model(images, training=False)
        if self._flip_averaging:  # test-time augmentation: average with the mirror image
            mirrored = self.model(tf.image.flip_left_right(images), training=False)
            probabilities = (probabilities + mirrored) / 2.0
        class_ids = tf.argmax(probabilities, axis=-1)
        return {
            constants.PROBABILITIES_OUTPUT: probabilities,
            constants.CLASS_ID_OUTPUT: class_ids,
            constants.CLASS_NAME_OUTPUT: tf.gather(self._class_names, class_ids),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_images(self, image_bytes):
        return self._predict_from_raw({constants.IMAGE_KEY: image_bytes})

    @tf.function(input_signature=[
        tf.TensorSpec([None, *constants.IMAGE_SHAPE], tf.uint8, name="pixels")])
    def serve_pixels(self, pixels):
        # Encode to PNG and go through the one Transform graph: no second preprocessing path.
        encoded = tf.map_fn(tf.io.encode_png, pixels,
                            fn_output_signature=tf.TensorSpec([], tf.string))
        return self._predict_from_raw({constants.IMAGE_KEY: encoded})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        return self._predict_from_raw(tf.io.parse_example(examples, self._raw_spec))

    def signatures(self) -> dict:
        return {
            constants.SERVING_SIGNATURE: self.serve_images.get_concrete_function(),
            constants.PIXELS_SIGNATURE: self.serve_pixels.get_concrete_function(),
            constants.EXAMPLES_SIGNATURE: self.serve_examples.get_concrete_function(),
        }


def write_warmup_requests(export_dir: str, sample_images: Sequence[bytes],
                          model_name: str = "cifar10") -> str:
    """Writes TF Serving warmup records, one PredictRequest per signature, so the first call is fast."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    images = list(sample_images)
    pixels = tf.stack([tf.io.decode_png(b, channels=constants.IMAGE_CHANNELS) for b in images])
    inputs_by_signature = {
        constants.SERVING_SIGNATURE: {"image_bytes": tf.make_tensor_proto(images, tf.string)},
        constants.PIXELS_SIGNATURE: {"pixels": tf.make_tensor_proto(pixels.numpy(), tf.uint8)},
    }
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in inputs_by_signature.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            for key, proto in inputs.items():
                request.inputs[key].CopyFrom(proto)
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def export_serving_model(model, tf_transform_output, export_dir: str,
                         sample_images: Sequence[bytes], flip_averaging: bool = False) -> None:
    """Saves the model with its three signatures and the warmup records."""
    module = ServingModule(model, tf_transform_output, flip_averaging)
    tf.saved_model.save(module, export_dir, signatures=module.signatures())
    write_warmup_requests(export_dir, sample_images)
