"""Input pipelines for the Tuner and the Trainer.

The ExampleGen's raw tf.Examples are read, run through the Transform graph once, and cached in
memory as float images; augmentation (random crop with padding, horizontal flip) is applied afresh
every epoch on top of the cache, never in Transform, so each epoch sees new variants.
"""
from __future__ import annotations

from typing import Iterable

import tensorflow as tf

from modules import constants

AUTOTUNE = tf.data.AUTOTUNE
CROP_PADDING = 4


def expand_patterns(patterns: Iterable[str]) -> list[str]:
    files: list[str] = []
    for pattern in patterns:
        files.extend(sorted(tf.io.gfile.glob(pattern)))
    if not files:
        raise FileNotFoundError(f"No example files match {list(patterns)}")
    return files


def transformed_dataset(file_patterns: Iterable[str], tf_transform_output,
                        parse_batch: int = 512) -> tf.data.Dataset:
    """Cached (image float32 [32,32,3], label int64) pairs, made by the saved Transform graph."""
    raw_spec = tf_transform_output.raw_feature_spec()
    tft_layer = tf_transform_output.transform_features_layer()
    files = expand_patterns(file_patterns)

    def transform(serialized: tf.Tensor):
        features = tft_layer(tf.io.parse_example(serialized, raw_spec))
        return (features[constants.TRANSFORMED_IMAGE_KEY],
                features[constants.TRANSFORMED_LABEL_KEY])

    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP",
                                      num_parallel_reads=AUTOTUNE)
    dataset = dataset.batch(parse_batch).map(transform, num_parallel_calls=AUTOTUNE).unbatch()
    return dataset.cache()


def augment(image: tf.Tensor) -> tf.Tensor:
    """Random crop from a zero-padded image and a random horizontal flip."""
    padded = tf.image.pad_to_bounding_box(
        image, CROP_PADDING, CROP_PADDING,
        constants.IMAGE_HEIGHT + 2 * CROP_PADDING, constants.IMAGE_WIDTH + 2 * CROP_PADDING)
    image = tf.image.random_crop(padded, constants.IMAGE_SHAPE)
    return tf.image.random_flip_left_right(image)


def make_batches(dataset: tf.data.Dataset, batch_size: int, training: bool,
                 seed: int | None = None) -> tf.data.Dataset:
    """Shuffles and augments (training only), then batches with one-hot labels."""
    if training:
        dataset = dataset.shuffle(20_000, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.map(lambda x, y: (augment(x), y), num_parallel_calls=AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    dataset = dataset.map(lambda x, y: (x, tf.one_hot(y, constants.NUM_CLASSES)),
                          num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


def count(dataset: tf.data.Dataset) -> int:
    """Number of elements; on a cached dataset this pass also fills the cache."""
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
