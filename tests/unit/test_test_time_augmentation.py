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


@pytest.mark.parametrize("tta, count", [("none", 1), ("flip", 2), ("flip_translate", 6),
                                        ("flip_if_unsure", 2)])
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
    for tta in (contract.TTA_NONE, contract.TTA_FLIP, contract.TTA_FLIP_TRANSLATE):
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
    ({"test_time_augmentation": "flip_if_unsure", "unsure_below": 0.6}, "flip_if_unsure"),
])
def test_export_settings_name_the_level(settings, level):
    assert export.settings_serving_views(json.loads(json.dumps(settings))).level == level


@pytest.mark.parametrize("views", [export.ServingViews("flip"),
                                   export.ServingViews("flip_if_unsure", 0.625)])
def test_export_settings_round_trip(views):
    assert export.settings_serving_views(json.loads(json.dumps(views.settings()))) == views


@pytest.mark.parametrize("level, threshold, message", [
    ("flip_if_unsure", None, "needs the confidence threshold"),
    ("flip", 0.5, "takes no confidence threshold"),
    ("rotate", None, "flip_translate"),
])
def test_a_level_and_its_threshold_go_together(level, threshold, message):
    with pytest.raises(ValueError, match=message):
        export.ServingViews(level, threshold)


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


def _softmax_model(batch_sizes: list):
    """Probabilities that change under the mirror: a softmax over the first row's red pixels."""
    def model(batch, training=False):
        batch_sizes.append(batch.shape[0])
        return tf.nn.softmax(8.0 * batch[:, 0, :contract.NUM_CLASSES, 0], axis=-1)
    return model


def _expected_flip_if_unsure(model, images: np.ndarray, threshold: float) -> np.ndarray:
    single = model(tf.constant(images)).numpy()
    both = 0.5 * (single + model(tf.constant(images[:, :, ::-1])).numpy())
    return np.where(single.max(axis=1, keepdims=True) < threshold, both, single)


def _traced(model, views):
    return tf.function(lambda batch: export.predict_probabilities(model, batch, views),
                       input_signature=[tf.TensorSpec([None, *contract.IMAGE_SHAPE])])


def test_flip_if_unsure_mirrors_only_the_unsure_images():
    images = RNG.random((64, *contract.IMAGE_SHAPE)).astype("float32")
    batch_sizes: list = []
    model = _softmax_model(batch_sizes)
    confidence = model(tf.constant(images)).numpy().max(axis=1)
    threshold = float(np.median(confidence))  # half the images are unsure
    got = _traced(model, export.ServingViews("flip_if_unsure", threshold))(
        tf.constant(images)).numpy()
    np.testing.assert_allclose(got, _expected_flip_if_unsure(model, images, threshold), rtol=1e-6)
    batch_sizes.clear()
    # Eagerly, the second call shows its batch: only the unsure images' mirrors.
    np.testing.assert_allclose(
        export._flip_if_unsure(model, tf.constant(images), threshold).numpy(), got, rtol=1e-6)
    assert batch_sizes == [64, int((confidence < threshold).sum())]


def test_flip_if_unsure_with_every_image_sure_makes_one_call():
    images = RNG.random((5, *contract.IMAGE_SHAPE)).astype("float32")
    batch_sizes: list = []
    model = _softmax_model(batch_sizes)
    got = export._flip_if_unsure(model, tf.constant(images), 0.0).numpy()
    assert batch_sizes == [5]
    np.testing.assert_allclose(got, model(tf.constant(images)).numpy(), rtol=1e-6)


def test_flip_if_unsure_on_a_fixed_batch_averages_every_image_as_flip():
    # The TFLite converter's batch of a fixed size: both views go in one call whatever the
    # level, so the gate would save nothing there; every image gets both.
    images = tf.constant(RNG.random((4, *contract.IMAGE_SHAPE)).astype("float32"))
    batch_sizes: list = []
    model = _softmax_model(batch_sizes)
    gated = export.predict_probabilities(model, images, export.ServingViews("flip_if_unsure", 0.5))
    assert batch_sizes == [8]
    np.testing.assert_allclose(gated.numpy(),
                               export.predict_probabilities(model, images, "flip").numpy())


def _probabilities(top: list[int], confidence: list[float]) -> np.ndarray:
    """[N, 10] rows whose top class and top probability are given."""
    rows = np.full((len(top), contract.NUM_CLASSES), 0.0)
    for row, (label, value) in enumerate(zip(top, confidence, strict=True)):
        rows[row] = (1.0 - value) / (contract.NUM_CLASSES - 1)
        rows[row, label] = value
    return rows


def test_the_threshold_is_the_lowest_from_which_on_it_scores_as_flip_does():
    # Image 1 (confidence 0.3) is put right by its mirror and image 2 (0.4) put wrong, image 3
    # (0.5) put right, the others stay right: gating the two least confident already scores as
    # flip, gating three falls short again, gating four stays level. So the four least confident
    # take the mirror: the threshold is halfway between 0.5 and 0.6 (no share floor here).
    labels = np.array([0, 1, 2, 3, 4])
    single = _probabilities([0, 9, 2, 9, 4], [0.2, 0.3, 0.4, 0.5, 0.6])
    mirrored = _probabilities([0, 1, 9, 3, 4], [0.9, 0.9, 0.9, 0.9, 0.9])
    single[2, 2], single[2, 9] = 0.4, 0.35  # image 2: both views summed favour 9 only narrowly
    mirrored[2, 9], mirrored[2, 2] = 0.9, 0.0
    flip_correct = ((single + mirrored).argmax(axis=1) == labels).sum()
    assert flip_correct == 4  # image 2 is lost by flip, images 1 and 3 won
    threshold = export.calibrate_unsure_below(single, mirrored, labels, min_share=0.0)
    assert threshold == pytest.approx(0.55)


def test_at_least_the_share_floor_takes_the_mirror_once_it_helps():
    # Only the least confident image needs its mirror; with a 60% floor three of five take it.
    labels = np.array([0, 1, 2, 3, 4])
    single = _probabilities([9, 1, 2, 3, 4], [0.2, 0.3, 0.4, 0.5, 0.6])
    mirrored = _probabilities([0, 1, 2, 3, 4], [0.9, 0.9, 0.9, 0.9, 0.9])
    assert export.calibrate_unsure_below(single, mirrored, labels, min_share=0.0) == (
        pytest.approx(0.25))
    threshold = export.calibrate_unsure_below(single, mirrored, labels, min_share=0.6)
    assert threshold == pytest.approx(0.45)
    assert export.unsure(single, threshold).tolist() == [True, True, True, False, False]


def test_a_mirror_that_never_helps_is_never_taken():
    labels = np.array([0, 1, 2])
    single = _probabilities([0, 1, 9], [0.5, 0.6, 0.7])
    mirrored = _probabilities([9, 9, 9], [0.9, 0.9, 0.9])
    assert export.calibrate_unsure_below(single, mirrored, labels) == 0.0


def test_a_mirror_needed_by_the_most_confident_image_is_taken_by_all():
    labels = np.array([0, 1])
    single = _probabilities([0, 9], [0.5, 0.6])
    mirrored = _probabilities([0, 1], [0.9, 0.9])
    threshold = export.calibrate_unsure_below(single, mirrored, labels)
    assert threshold > 1.0 and np.float32(threshold) > np.float32(1.0)
