"""Input pipelines for the Tuner and the Trainer, and the one reader of the ExampleGen's output.

The ExampleGen's raw tf.Examples are read, run through the Transform graph once, and cached in
memory as float images; augmentation (random translation by a reflect-padded crop, horizontal flip,
optionally cutout) is applied afresh every epoch on top of the cache, never in Transform, so each
epoch sees new variants.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from modules import contract

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """How the training images change from epoch to epoch: the augmentation hyperparameters
    (modules.contract.DEFAULT_HPARAMS), in one value for the input pipelines to pass on."""

    translate_pixels: int = int(contract.DEFAULT_HPARAMS["translate_pixels"])
    alternating_flip: bool = bool(contract.DEFAULT_HPARAMS["alternating_flip"])
    cutout_size: int = int(contract.DEFAULT_HPARAMS["cutout_size"])

    def __post_init__(self) -> None:
        if not 0 <= self.translate_pixels < contract.IMAGE_HEIGHT:
            raise ValueError(f"translate_pixels must be within [0, {contract.IMAGE_HEIGHT}), "
                             f"not {self.translate_pixels}.")

    @classmethod
    def of(cls, hparams: Mapping[str, Any]) -> Augmentation:
        """The augmentation that hyperparameters (over the defaults) ask for."""
        hp = {**contract.DEFAULT_HPARAMS, **hparams}
        return cls(translate_pixels=int(hp["translate_pixels"]),
                   alternating_flip=bool(hp["alternating_flip"]),
                   cutout_size=int(hp["cutout_size"]))


def expand_patterns(patterns: Iterable[str]) -> list[str]:
    files: list[str] = []
    for pattern in patterns:
        files.extend(sorted(tf.io.gfile.glob(pattern)))
    if not files:
        raise FileNotFoundError(f"No example files match {list(patterns)}")
    return files


def split_pattern(split_uri: str) -> str:
    """The files of one split of an Examples artifact (TFX's Split-<name> folder)."""
    return os.path.join(split_uri, "*")


def read_examples(file_patterns: Iterable[str], limit: int | None = None,
                  num_parallel_reads: int | None = None) -> tf.data.Dataset:
    """Serialized tf.Examples, in file order, from the ExampleGen's GZIP TFRecord files."""
    dataset = tf.data.TFRecordDataset(expand_patterns(file_patterns), compression_type="GZIP",
                                      num_parallel_reads=num_parallel_reads)
    return dataset.take(limit) if limit else dataset


def encoded_images(file_patterns: Iterable[str], limit: int | None = None) -> list[bytes]:
    """The PNG bytes of the first `limit` examples, as a serving client would send them."""
    spec = {contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
    return [tf.io.parse_single_example(record, spec)[contract.IMAGE_KEY].numpy()
            for record in read_examples(file_patterns, limit)]


def decoded_images(file_patterns: Iterable[str],
                   limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 32, 32, 3] and int labels [N] of the first `limit` examples."""
    spec = {contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            contract.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
    dataset = read_examples(file_patterns, limit).map(
        lambda record: tf.io.parse_single_example(record, spec)).map(
        lambda features: (tf.io.decode_png(features[contract.IMAGE_KEY],
                                           channels=contract.IMAGE_CHANNELS),
                          features[contract.LABEL_KEY]))
    images, labels = [], []
    for image, label in dataset.as_numpy_iterator():
        images.append(image)
        labels.append(label)
    if not images:
        raise ValueError(f"No examples in {list(file_patterns)}")
    return np.stack(images), np.asarray(labels)


def transformed_dataset(file_patterns: Iterable[str], tf_transform_output,
                        parse_batch: int = 512) -> tf.data.Dataset:
    """Cached (image float32 [32,32,3], label int64) pairs, made by the saved Transform graph."""
    raw_spec = tf_transform_output.raw_feature_spec()
    tft_layer = tf_transform_output.transform_features_layer()

    def transform(serialized: tf.Tensor):
        features = tft_layer(tf.io.parse_example(serialized, raw_spec))
        return (features[contract.TRANSFORMED_IMAGE_KEY],
                features[contract.TRANSFORMED_LABEL_KEY])

    dataset = read_examples(file_patterns, num_parallel_reads=AUTOTUNE)
    dataset = dataset.batch(parse_batch).map(transform, num_parallel_calls=AUTOTUNE).unbatch()
    return dataset.cache()


def cutout(images: tf.Tensor, size: int, seed: int | None = None) -> tf.Tensor:
    """Covers a random size x size square of each image [N, H, W, C] with the batch's mean colour.

    The square's centre is anywhere in the image, so it may hang over an edge (DeVries & Taylor,
    2017); the mean colour is what a zero is after normalisation, which their cutout fills in.
    """
    if size <= 0:
        return images
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    sides = tf.cast(tf.stack([height, width]), tf.float32)
    centres = tf.cast(tf.random.uniform([batch, 2], seed=seed) * sides, tf.int32)
    top, left = centres[:, 0] - size // 2, centres[:, 1] - size // 2
    rows = tf.range(height)[tf.newaxis, :]
    cols = tf.range(width)[tf.newaxis, :]
    in_rows = (rows >= top[:, tf.newaxis]) & (rows < top[:, tf.newaxis] + size)  # [N, H]
    in_cols = (cols >= left[:, tf.newaxis]) & (cols < left[:, tf.newaxis] + size)  # [N, W]
    covered = in_rows[:, :, tf.newaxis, tf.newaxis] & in_cols[:, tf.newaxis, :, tf.newaxis]
    mean = tf.reduce_mean(images, axis=[0, 1, 2], keepdims=True)
    return tf.where(covered, mean, images)


def augment_batch(images: tf.Tensor, seed: int | None = None,
                  flips: tf.Tensor | None = None,
                  augmentation: Augmentation = Augmentation()) -> tf.Tensor:
    """Random translation (reflect-padded crop) and horizontal flip of a batch [N, 32, 32, 3].

    Done per batch with gathers rather than per image, so augmentation costs little of the CPU
    that training needs. The shift is up to `augmentation.translate_pixels` each way (the
    default 2 suits short schedules; the classic is 4). `flips` (bool [N]) says which images to
    mirror; by default each is a coin toss. With a `cutout_size`, a square of that side is
    covered too (`cutout`).
    """
    pad = augmentation.translate_pixels
    batch = tf.shape(images)[0]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    offsets = tf.random.uniform([batch, 2], 0, 2 * pad + 1, dtype=tf.int32, seed=seed)
    rows = offsets[:, :1] + tf.range(contract.IMAGE_HEIGHT)[tf.newaxis, :]
    cols = offsets[:, 1:] + tf.range(contract.IMAGE_WIDTH)[tf.newaxis, :]
    shifted = tf.gather(padded, rows, axis=1, batch_dims=1)
    shifted = tf.gather(shifted, cols, axis=2, batch_dims=1)
    if flips is None:
        flip = tf.random.uniform([batch, 1, 1, 1], seed=seed) < 0.5
    else:
        flip = tf.reshape(flips, [batch, 1, 1, 1])
    return cutout(tf.where(flip, tf.reverse(shifted, axis=[2]), shifted),
                  augmentation.cutout_size, seed)


def make_batches(dataset: tf.data.Dataset, batch_size: int, training: bool,
                 seed: int | None = None,
                 augmentation: Augmentation = Augmentation()) -> tf.data.Dataset:
    """Shuffles and augments (training only; random flips whatever `augmentation` says of
    alternating ones, which training_batches makes), then batches with one-hot labels."""
    if training:
        dataset = dataset.shuffle(50_000, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    if training:
        dataset = dataset.map(lambda x, y: (augment_batch(x, augmentation=augmentation), y),
                              num_parallel_calls=AUTOTUNE)
    dataset = dataset.map(lambda x, y: (x, tf.one_hot(y, contract.NUM_CLASSES)),
                          num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


def training_batches(dataset: tf.data.Dataset, num_examples: int, batch_size: int,
                     seed: int | None = None,
                     augmentation: Augmentation = Augmentation()) -> tf.data.Dataset:
    """The endless stream of augmented training batches that the Tuner and the Trainer fit on.

    With `augmentation.alternating_flip`, each image is mirrored at random in the first epoch
    and then in every other epoch only: over any two epochs the network sees both sides of every
    image once, which random flips leave to chance (airbench's "derandomized" flip).
    """
    if not augmentation.alternating_flip:
        return make_batches(dataset, batch_size, training=True, seed=seed,
                            augmentation=augmentation).repeat()
    first_flip_seed = tf.constant(0 if seed is None else seed, tf.int64)

    def with_flip(position: tf.Tensor, item):
        index, (image, label) = item
        first = tf.random.stateless_uniform([], tf.stack([first_flip_seed, index])) < 0.5
        odd_epoch = (position // num_examples) % 2 == 1
        return image, label, tf.math.logical_xor(first, odd_epoch)

    stream = (dataset.enumerate()
              .shuffle(50_000, seed=seed, reshuffle_each_iteration=True)
              .repeat()
              .enumerate()
              .map(with_flip, num_parallel_calls=AUTOTUNE)
              .batch(batch_size, drop_remainder=True)
              .map(lambda x, y, flips: (augment_batch(x, flips=flips, augmentation=augmentation),
                                        tf.one_hot(y, contract.NUM_CLASSES)),
                   num_parallel_calls=AUTOTUNE))
    return stream.prefetch(AUTOTUNE)


def without_autotune(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """The dataset with tf.data's autotuning off, for a fit that ends while the process goes on.

    Each iterator of an autotuned dataset runs a tuning thread that its destructor waits for: at
    the end of a Tuner trial, the training iterator's destruction took 19-35 s in 7 of 18 trials
    timed on full data (proxy budget, 2 cores), and never in 8 with autotuning off, whose epochs
    took no longer.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def count(dataset: tf.data.Dataset) -> int:
    """Number of elements; on a cached dataset this pass also fills the cache."""
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
