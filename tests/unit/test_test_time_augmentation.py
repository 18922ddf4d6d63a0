"""Test-time augmentation of the exported model: which views it averages, and with what weights."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from modules import contract, export
from pipeline import configs

RNG = np.random.default_rng(7)
IMAGES = RNG.random((3, *contract.IMAGE_SHAPE)).astype("float32")


def _shift(image: np.ndarray, down: int, right: int) -> np.ndarray:
    """The image moved by (down, right) pixels, the border filled by reflection."""
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="reflect")
    height, width = contract.IMAGE_HEIGHT, contract.IMAGE_WIDTH
    return padded[1 - down:1 - down + height, 1 - right:1 - right + width]


@pytest.mark.parametrize("tta, count", [("none", 1), ("flip", 2), ("flip_translate", 6)])
def test_weights_sum_to_one(tta, count):
    views = export.tta_views(tf.constant(IMAGES), tta)
    assert len(views) == count == contract.TTA_VIEWS[tta]
    assert sum(weight for _, weight in views) == pytest.approx(1.0)
    assert all(view.shape == IMAGES.shape for view, _ in views)


def test_flip_translate_views_are_mirrors_and_one_pixel_shifts():
    views = [view.numpy()[0] for view, _ in export.tta_views(tf.constant(IMAGES), "flip_translate")]
    image = IMAGES[0]
    expected = [image, _shift(image, 1, 1), _shift(image, -1, -1)]
    for index, original in enumerate(expected):
        np.testing.assert_array_equal(views[2 * index], original)
        np.testing.assert_array_equal(views[2 * index + 1], original[:, ::-1])


def test_probabilities_are_the_weighted_mean_over_views():
    # A "model" whose output depends on the view: the mean of a few pixels, as 10 fake scores.
    def model(batch, training=False):
        assert training is False
        return tf.tile(tf.reduce_mean(batch[:, :2, :2, :], axis=[1, 2, 3])[:, None], [1, 10])

    images = tf.constant(IMAGES)
    for tta in contract.TEST_TIME_AUGMENTATIONS:
        expected = sum(weight * model(view) for view, weight in export.tta_views(images, tta))
        got = export.predict_probabilities(model, images, tta)
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6)


def test_unknown_level_is_refused_everywhere():
    with pytest.raises(ValueError, match="flip_translate"):
        export.tta_views(tf.constant(IMAGES), "rotate")
    with pytest.raises(ValueError, match="test_time_augmentation"):
        configs.PipelineConfig(output_dir="/tmp/out", test_time_augmentation="rotate")


@pytest.mark.parametrize("settings, level", [
    ({"test_time_augmentation": "flip_translate"}, "flip_translate"),
    ({"flip_averaging": True}, "flip"),  # export.json of a model exported before the levels
    ({"flip_averaging": False}, "none"),
])
def test_export_settings_name_the_level(settings, level):
    assert export.settings_test_time_augmentation(json.loads(json.dumps(settings))) == level


def _recording_model(batch_sizes: list):
    """A view-dependent stand-in for the network that records the batch each call gets."""
    def model(batch, training=False):
        batch_sizes.append(batch.shape[0])
        return tf.tile(tf.reduce_mean(batch[:, :2, :2, :], axis=[1, 2, 3])[:, None], [1, 10])
    return model


@pytest.mark.parametrize("count", [1, 5])
def test_a_batch_of_any_size_takes_one_call_per_view(count):
    # The SavedModel's layout (batch size unknown when traced): faster on CPU than one call.
    batch_sizes: list = []
    model = _recording_model(batch_sizes)
    tta = contract.TTA_FLIP_TRANSLATE
    traced = tf.function(lambda batch: export.predict_probabilities(model, batch, tta),
                         input_signature=[tf.TensorSpec([None, *contract.IMAGE_SHAPE])])
    images = tf.constant(RNG.random((count, *contract.IMAGE_SHAPE)).astype("float32"))
    got = traced(images).numpy()
    assert batch_sizes == [None] * contract.TTA_VIEWS[tta]
    expected = sum(weight * model(view) for view, weight in export.tta_views(images, tta))
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-6)


def test_a_fixed_batch_goes_through_the_model_as_one_call():
    # The TFLite converter's batch of 1: every view in one call, so int8 has one set of ranges.
    batch_sizes: list = []
    export.predict_probabilities(_recording_model(batch_sizes), tf.constant(IMAGES[:1]),
                                 "flip_translate")
    assert batch_sizes == [contract.TTA_VIEWS["flip_translate"]]
