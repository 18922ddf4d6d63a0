"""Exports the trained Keras model as a SavedModel that TF Serving, TFMA and batch jobs all call.

The Transform graph travels inside the SavedModel, so every signature decodes and scales images with
the same code that prepared the training data. Signatures (names in modules.constants):
  serving_default   image_bytes: string [N], PNG or JPEG (REST clients send {"b64": ...})
  serving_pixels    pixels: uint8 [N, 32, 32, 3]
  serving_examples  examples: string [N], serialized tf.Example (TFMA, batch inference)
Each returns probabilities [N, 10], class_ids [N] and class_names [N].
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import tensorflow as tf

from modules import constants

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# Beside Format-Serving in the Trainer's model artifact: the bare Keras model, for the TFLite
# converter (the Transform graph's string ops cannot run in TFLite).
KERAS_DIR = "Format-Keras"
KERAS_FILE = "model.keras"
EXPORT_SETTINGS_FILE = "export.json"  # how the served model wraps the Keras one (its TTA)


# Test-time augmentation (levels in modules.constants). Measured on the 16-epoch full-data model
# (5,000 test images): none 88.94%, flip 89.74%, flip_translate 90.06%, for 1x, 2x and 6x the
# compute per image.
def check_test_time_augmentation(name: str) -> str:
    if name not in constants.TEST_TIME_AUGMENTATIONS:
        raise ValueError(f"Unknown test-time augmentation {name!r}; choose one of "
                         f"{', '.join(constants.TEST_TIME_AUGMENTATIONS)}.")
    return name


def _mirror(images: tf.Tensor) -> tf.Tensor:
    return tf.reverse(images, axis=[2])


def tta_views(images: tf.Tensor, tta: str) -> list[tuple[tf.Tensor, float]]:
    """(view, weight) pairs whose weights sum to 1.

    flip_translate adds the image shifted one pixel down-right and one up-left (reflect-padded, as
    in training), each with its mirror: half the weight stays on the unshifted pair.
    """
    check_test_time_augmentation(tta)
    if tta == constants.TTA_NONE:
        return [(images, 1.0)]
    if tta == constants.TTA_FLIP:
        return [(images, 0.5), (_mirror(images), 0.5)]
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    down_right, up_left = padded[:, :-2, :-2, :], padded[:, 2:, 2:, :]
    return [(images, 0.25), (_mirror(images), 0.25),
            (down_right, 0.125), (_mirror(down_right), 0.125),
            (up_left, 0.125), (_mirror(up_left), 0.125)]


def predict_probabilities(model, images: tf.Tensor, tta: str) -> tf.Tensor:
    """The model's probabilities, averaged over the test-time views of each image.

    All views go through the model as one batch: one call, and one set of activation ranges
    when the graph is quantized (two separate calls quantized badly: 64% top-1 agreement).
    """
    views = tta_views(images, tta)
    if len(views) == 1:
        return model(images, training=False)
    count = tf.shape(images)[0]
    probabilities = model(tf.concat([view for view, _ in views], axis=0), training=False)
    return tf.add_n([weight * probabilities[i * count:(i + 1) * count]
                     for i, (_, weight) in enumerate(views)])


def settings_test_time_augmentation(settings: dict) -> str:
    """The level an export.json names; models exported before the levels existed say flip_averaging."""
    if "test_time_augmentation" in settings:
        return check_test_time_augmentation(settings["test_time_augmentation"])
    return constants.TTA_FLIP if settings.get("flip_averaging") else constants.TTA_NONE


def keras_model_path(model_artifact_uri: str) -> str:
    return os.path.join(model_artifact_uri, KERAS_DIR, KERAS_FILE)


def load_keras_model(model_artifact_uri: str):
    """The bare Keras model and the export settings the SavedModel was made with."""
    import keras

    path = keras_model_path(model_artifact_uri)
    with tf.io.gfile.GFile(os.path.join(os.path.dirname(path), EXPORT_SETTINGS_FILE)) as f:
        settings = json.load(f)
    return keras.models.load_model(path, compile=False), settings  # inference only


class ServingModule(tf.Module):
    """Holds the model and the Transform layer so tf.saved_model.save tracks both."""

    def __init__(self, model, tf_transform_output, tta: str):
        super().__init__()
        self.model = model
        self.tft_layer = tf_transform_output.transform_features_layer()
        # Batch jobs only need to send the image; other raw features are not model inputs.
        self._raw_spec = {constants.IMAGE_KEY:
                          tf_transform_output.raw_feature_spec()[constants.IMAGE_KEY]}
        self._tta = check_test_time_augmentation(tta)
        self._class_names = tf.constant(constants.CLASS_NAMES)

    def _predict_from_raw(self, raw_features: dict) -> dict:
        images = self.tft_layer(raw_features)[constants.TRANSFORMED_IMAGE_KEY]
        probabilities = predict_probabilities(self.model, images, self._tta)
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
    examples = [tf.train.Example(features=tf.train.Features(feature={
        constants.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))}))
        .SerializeToString() for image in images]
    inputs_by_signature = {
        constants.SERVING_SIGNATURE: {"image_bytes": tf.make_tensor_proto(images, tf.string)},
        constants.PIXELS_SIGNATURE: {"pixels": tf.make_tensor_proto(pixels.numpy(), tf.uint8)},
        constants.EXAMPLES_SIGNATURE: {"examples": tf.make_tensor_proto(examples, tf.string)},
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
                         sample_images: Sequence[bytes], tta: str = constants.TTA_NONE) -> None:
    """Saves the model with its three signatures and the warmup records, and the Keras model beside."""
    module = ServingModule(model, tf_transform_output, tta)
    tf.saved_model.save(module, export_dir, signatures=module.signatures())
    write_warmup_requests(export_dir, sample_images)
    keras_path = keras_model_path(os.path.dirname(export_dir.rstrip("/")))
    tf.io.gfile.makedirs(os.path.dirname(keras_path))
    model.save(keras_path)
    with tf.io.gfile.GFile(os.path.join(os.path.dirname(keras_path), EXPORT_SETTINGS_FILE),
                           "w") as f:
        json.dump({"test_time_augmentation": tta}, f)
