"""Transform's preprocessing_fn: the one definition of "model input", for training and serving.

There is one path from any input to the model: encoded bytes are checked and decoded by
`decode_images`, giving uint8 [N, 32, 32, 3]; pixels sent as such are checked by `check_pixels`;
both are scaled by `scale_pixels`. preprocessing_fn is exactly decode_images + scale_pixels (no
analyzers), and the exported SavedModel (modules.export) calls the same two functions, so a
served model sees what training saw.

Every check runs in the graph, so TF Serving answers INVALID_ARGUMENT with a one-line message
naming the input, the image's index and what is wrong (e.g. "image_bytes[2]: the image is 16x64
(height x width); the model takes 32x32 PNG or JPEG images"). The declared size is read from the
PNG or JPEG header before anything is decoded: a small file declaring 50000x50000 pixels is refused
without allocating them.
"""
from __future__ import annotations

import tensorflow as tf

from modules import contract

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
_HEADER_BYTES = 24  # a PNG's signature, IHDR length and type, then width and height (big-endian)
_EXPECTED = f"{contract.IMAGE_HEIGHT}x{contract.IMAGE_WIDTH}"


def scale_pixels(pixels: tf.Tensor) -> tf.Tensor:
    """Pixel values 0..255 (any numeric dtype) -> float32 in [0, 1]; also folded into TFLite."""
    return tf.cast(pixels, tf.float32) / 255.0


def _big_endian(four_bytes: tf.Tensor) -> tf.Tensor:
    values = tf.cast(tf.io.decode_raw(four_bytes, tf.uint8), tf.int64)
    return values[0] * 16777216 + values[1] * 65536 + values[2] * 256 + values[3]


def declared_size(encoded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(is_png, is_jpeg, [height, width]) of one encoded image, from its header only.

    The size is [-1, -1] for anything else. Short inputs are padded first, so no substr runs
    out of range.
    """
    padded = tf.strings.join([encoded, tf.constant(b"\0" * _HEADER_BYTES)])
    is_png = tf.equal(tf.strings.substr(padded, 0, len(PNG_SIGNATURE)), PNG_SIGNATURE)
    is_jpeg = tf.equal(tf.strings.substr(padded, 0, len(JPEG_SIGNATURE)), JPEG_SIGNATURE)

    def png_size() -> tf.Tensor:
        return tf.stack([_big_endian(tf.strings.substr(padded, 20, 4)),
                         _big_endian(tf.strings.substr(padded, 16, 4))])

    def jpeg_size() -> tf.Tensor:
        return tf.cast(tf.io.extract_jpeg_shape(encoded)[:2], tf.int64)

    def unknown() -> tf.Tensor:
        return tf.constant([-1, -1], tf.int64)

    size = tf.cond(is_png, png_size, lambda: tf.cond(is_jpeg, jpeg_size, unknown))
    return is_png, is_jpeg, size


def _padded_shape(values: tf.Tensor, length: int) -> tf.Tensor:
    """The runtime shape, padded with -1 to `length` entries.

    Checks compare these values, never tf.rank or tf.shape's length: Grappler folds those to the
    signature's declared rank, which TF Serving does not enforce on what it feeds.
    """
    shape = tf.shape(values, out_type=tf.int64)
    return tf.concat([shape, tf.fill([length], tf.constant(-1, tf.int64))], 0)[:length]


def check_vector(values: tf.Tensor, input_name: str) -> tf.Tensor:
    """The string vector [N] a signature takes (TF Serving does not check the rank)."""
    dims = _padded_shape(values, 2)
    check = tf.debugging.Assert(tf.logical_and(dims[0] >= 0, tf.equal(dims[1], -1)), [
        tf.strings.format(input_name + ": expected a vector of strings [N], got shape {}",
                          tf.shape(values), summarize=-1)])
    with tf.control_dependencies([check]):
        return tf.identity(values)


def decode_images(encoded_images: tf.Tensor, input_name: str = contract.IMAGE_KEY) -> tf.Tensor:
    """PNG/JPEG bytes [N] -> uint8 [N, 32, 32, 3], or INVALID_ARGUMENT naming input_name[i].

    Refused before decoding: anything but PNG or JPEG, and a header declaring another size than
    32x32. Grayscale and RGBA images of the right size are converted to RGB, as in training.
    """
    encoded_images = check_vector(encoded_images, input_name)

    def decode_one(args: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        index, encoded = args
        is_png, is_jpeg, size = declared_size(encoded)
        known = tf.debugging.Assert(tf.logical_or(is_png, is_jpeg), [tf.strings.format(
            input_name + "[{}]: not a PNG or JPEG image ({} bytes)",
            (index, tf.strings.length(encoded)))])
        with tf.control_dependencies([known]):
            right_size = tf.debugging.Assert(
                tf.reduce_all(tf.equal(size, [contract.IMAGE_HEIGHT, contract.IMAGE_WIDTH])),
                [tf.strings.format(
                    input_name + "[{}]: the image is {}x{} (height x width); the model takes "
                    f"{_EXPECTED} PNG or JPEG images", (index, size[0], size[1]))])
        with tf.control_dependencies([right_size]):  # decode only what passed both checks
            image = tf.io.decode_image(encoded, channels=contract.IMAGE_CHANNELS,
                                       expand_animations=False)
        return tf.ensure_shape(image, contract.IMAGE_SHAPE)

    count = tf.shape(encoded_images, out_type=tf.int64)[0]
    return tf.map_fn(decode_one, (tf.range(count), encoded_images),
                     fn_output_signature=tf.TensorSpec(contract.IMAGE_SHAPE, tf.uint8))


def check_pixels(pixels: tf.Tensor, input_name: str = contract.PIXELS_INPUT) -> tf.Tensor:
    """uint8 [N, 32, 32, 3] as given, or INVALID_ARGUMENT naming input_name and its shape.

    TF Serving feeds a tensor of any shape to a signature whose input says [None, 32, 32, 3]:
    without this check [N, 16, 64, 3] would be classified.
    """
    dims = _padded_shape(pixels, 5)
    right = tf.logical_and(
        tf.reduce_all(tf.equal(dims[1:], [*contract.IMAGE_SHAPE, -1])), dims[0] >= 0)
    check = tf.debugging.Assert(right, [tf.strings.format(
        input_name + ": expected uint8 [N, {}, {}, {}], got shape {}",
        (*contract.IMAGE_SHAPE, tf.shape(pixels)), summarize=-1)])
    with tf.control_dependencies([check]):
        return tf.ensure_shape(tf.identity(pixels), [None, *contract.IMAGE_SHAPE])


def decode_and_scale(encoded_images: tf.Tensor) -> tf.Tensor:
    """PNG/JPEG bytes [N] -> float32 [N, 32, 32, 3] in [0, 1]."""
    return scale_pixels(decode_images(encoded_images))


def preprocessing_fn(inputs: dict) -> dict:
    """Raw features -> model features: the image decoded and scaled, the label passed through."""
    images = inputs[contract.IMAGE_KEY]
    if isinstance(images, tf.SparseTensor):  # never with the curated schema; defensive for drift
        images = tf.sparse.to_dense(images, default_value=b"")
    images = tf.reshape(images, [-1])
    outputs = {contract.TRANSFORMED_IMAGE_KEY: decode_and_scale(images)}
    if contract.LABEL_KEY in inputs:
        outputs[contract.TRANSFORMED_LABEL_KEY] = tf.reshape(inputs[contract.LABEL_KEY], [-1])
    return outputs
