"""Transform's preprocessing_fn: the one definition of "model input", shared by training and serving.

Its graph is saved by Transform and embedded in every exported SavedModel, so the pixels a served
model sees are decoded and scaled by exactly the code that prepared the training data.
"""
from __future__ import annotations

import tensorflow as tf

from modules import constants


def scale_pixels(pixels: tf.Tensor) -> tf.Tensor:
    """Pixel values 0..255 (any numeric dtype) -> float32 in [0, 1]. Also folded into TFLite models."""
    return tf.cast(pixels, tf.float32) / 255.0


def decode_and_scale(encoded_images: tf.Tensor) -> tf.Tensor:
    """PNG/JPEG bytes [N] -> float32 [N, 32, 32, 3] in [0, 1]."""

    def decode_one(encoded: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(encoded, channels=constants.IMAGE_CHANNELS,
                                   expand_animations=False)
        image = tf.ensure_shape(image, [None, None, constants.IMAGE_CHANNELS])
        return tf.reshape(image, constants.IMAGE_SHAPE)

    images = tf.map_fn(decode_one, encoded_images,
                       fn_output_signature=tf.TensorSpec(constants.IMAGE_SHAPE, tf.uint8))
    return scale_pixels(images)


def preprocessing_fn(inputs: dict) -> dict:
    """Raw features -> model features: the image decoded and scaled, the label passed through."""
    images = inputs[constants.IMAGE_KEY]
    if isinstance(images, tf.SparseTensor):  # never with the curated schema; defensive for drift
        images = tf.sparse.to_dense(images, default_value=b"")
    images = tf.reshape(images, [-1])
    outputs = {constants.TRANSFORMED_IMAGE_KEY: decode_and_scale(images)}
    if constants.LABEL_KEY in inputs:
        outputs[constants.TRANSFORMED_LABEL_KEY] = tf.reshape(inputs[constants.LABEL_KEY], [-1])
    return outputs
