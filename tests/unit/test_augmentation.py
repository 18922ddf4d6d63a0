"""Training-time augmentation: every output is a small shift (and maybe mirror) of its input."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from modules import contract, data

DEFAULT_SHIFT = int(contract.DEFAULT_HPARAMS["translate_pixels"])


def _windows(image: np.ndarray, pad: int) -> list[np.ndarray]:
    padded = np.pad(image, [(pad, pad), (pad, pad), (0, 0)], mode="reflect")
    height, width = contract.IMAGE_HEIGHT, contract.IMAGE_WIDTH
    return [padded[i:i + height, j:j + width]
            for i in range(2 * pad + 1) for j in range(2 * pad + 1)]


@pytest.mark.parametrize("pixels", [DEFAULT_SHIFT, 4])
def test_each_image_is_a_shifted_or_mirrored_copy_of_itself(pixels):
    images = np.random.default_rng(1).random((32, *contract.IMAGE_SHAPE)).astype("float32")
    augmented = data.augment_batch(tf.constant(images), seed=3,
                                   augmentation=data.Augmentation(translate_pixels=pixels)).numpy()
    assert augmented.shape == images.shape
    flipped = beyond_two = 0
    for original, result in zip(images, augmented, strict=False):
        plain = any(np.array_equal(result, w) for w in _windows(original, pixels))
        mirrored = any(np.array_equal(result[:, ::-1], w) for w in _windows(original, pixels))
        assert plain or mirrored
        flipped += mirrored and not plain
        beyond_two += not any(np.array_equal(view, w) for view in (result, result[:, ::-1])
                              for w in _windows(original, 2))
    assert 0 < flipped < len(images)  # both kinds occur
    assert (beyond_two > 0) == (pixels > 2)  # the shift reaches as far as it may


def test_a_shift_must_leave_some_of_the_image():
    with pytest.raises(ValueError, match="translate_pixels"):
        data.Augmentation(translate_pixels=contract.IMAGE_HEIGHT)
    assert data.Augmentation.of({"translate_pixels": 3, "cutout_size": 8}) == data.Augmentation(
        translate_pixels=3, cutout_size=8)


def test_evaluation_batches_are_left_alone_and_training_batches_keep_their_shape():
    images = np.random.default_rng(2).random((16, *contract.IMAGE_SHAPE)).astype("float32")
    labels = np.arange(16) % contract.NUM_CLASSES
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    x_eval, y_eval = next(iter(data.make_batches(dataset, 16, training=False)))
    np.testing.assert_array_equal(x_eval.numpy(), images)
    np.testing.assert_array_equal(y_eval.numpy().argmax(axis=1), labels)
    x_train, _ = next(iter(data.make_batches(dataset, 8, training=True, seed=0)))
    assert x_train.shape == (8, *contract.IMAGE_SHAPE)


def _mirrored(original: np.ndarray, result: np.ndarray) -> bool:
    plain = any(np.array_equal(result, w) for w in _windows(original, DEFAULT_SHIFT))
    mirrored = any(np.array_equal(result[:, ::-1], w) for w in _windows(original, DEFAULT_SHIFT))
    assert plain or mirrored
    return mirrored and not plain


def test_alternating_flip_mirrors_each_image_in_every_other_epoch():
    count, batch, epochs = 8, 4, 4
    images = np.random.default_rng(4).random((count, *contract.IMAGE_SHAPE)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(count)))
    stream = data.training_batches(dataset, count, batch, seed=5,
                                   augmentation=data.Augmentation(alternating_flip=True))
    flipped = np.zeros((epochs, count), bool)
    for step, (x, y) in enumerate(stream.take(epochs * count // batch)):
        for result, index in zip(x.numpy(), y.numpy().argmax(axis=1), strict=True):
            flipped[step * batch // count, index] = _mirrored(images[index], result)
    assert 0 < flipped[0].sum() < count  # the first epoch is random
    for epoch in range(1, epochs):
        np.testing.assert_array_equal(flipped[epoch], ~flipped[epoch - 1])


def test_cutout_covers_one_square_of_each_image_with_the_mean_colour():
    images = np.random.default_rng(6).random((64, *contract.IMAGE_SHAPE)).astype("float32")
    size = 8
    covered = data.cutout(tf.constant(images), size, seed=2).numpy()
    mean = images.mean(axis=(0, 1, 2))
    hanging_over = 0
    for original, result in zip(images, covered, strict=True):
        changed = np.any(result != original, axis=-1)
        rows, cols = np.nonzero(changed)
        assert 0 < len(rows) <= size * size
        top, left, bottom, right = rows.min(), cols.min(), rows.max(), cols.max()
        # one axis-aligned square (cut by the edges), all of it the mean colour
        assert changed[top:bottom + 1, left:right + 1].all()
        assert len(rows) == (bottom - top + 1) * (right - left + 1)
        assert bottom - top < size and right - left < size
        np.testing.assert_allclose(result[changed], np.broadcast_to(mean, (len(rows), 3)),
                                   rtol=1e-5)
        hanging_over += len(rows) < size * size
    assert 0 < hanging_over < len(images)  # squares cut by an edge and whole ones both occur


def test_no_cutout_leaves_the_batch_alone():
    images = np.random.default_rng(7).random((4, *contract.IMAGE_SHAPE)).astype("float32")
    np.testing.assert_array_equal(data.cutout(tf.constant(images), 0).numpy(), images)
