"""preprocessing_fn run through real tf.Transform on Beam, on a few real-looking records."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from modules import contract, preprocessing


def _png(image: np.ndarray) -> bytes:
    return tf.io.encode_png(image).numpy()


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, contract.IMAGE_SHAPE, dtype=np.uint8) for _ in range(4)]


def test_preprocessing_fn_through_tft_beam(tmp_path, images):
    raw_data = [{contract.IMAGE_KEY: _png(image), contract.LABEL_KEY: label}
                for label, image in enumerate(images)]
    feature_spec = {contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
                    contract.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))
    with tft_beam.Context(temp_dir=str(tmp_path), force_tf_compat_v1=False):
        (transformed, transformed_metadata), _ = (
            (raw_data, metadata)
            | tft_beam.AnalyzeAndTransformDataset(preprocessing.preprocessing_fn))
    assert len(transformed) == len(images)
    spec = transformed_metadata.schema
    assert {f.name for f in spec.feature} == {contract.TRANSFORMED_IMAGE_KEY,
                                              contract.TRANSFORMED_LABEL_KEY}
    for label, (row, image) in enumerate(zip(transformed, images, strict=False)):
        pixels = np.asarray(row[contract.TRANSFORMED_IMAGE_KEY], np.float32).reshape(32, 32, 3)
        np.testing.assert_allclose(pixels, image / 255.0, atol=1e-6)
        assert 0.0 <= pixels.min() and pixels.max() <= 1.0
        assert row[contract.TRANSFORMED_LABEL_KEY] == label


def test_jpeg_decodes_too(images):
    jpeg = tf.io.encode_jpeg(images[0], quality=95).numpy()
    out = preprocessing.decode_and_scale(tf.constant([jpeg]))
    assert out.shape == (1, 32, 32, 3) and out.dtype == tf.float32


def test_wrong_size_image_fails_with_a_reshape_error():
    small = tf.io.encode_png(tf.zeros([10, 10, 3], tf.uint8)).numpy()
    with pytest.raises(tf.errors.InvalidArgumentError):
        preprocessing.decode_and_scale(tf.constant([small]))
