"""modules.data's one reader of the ExampleGen's GZIP TFRecords, and the Model artifact layout."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from components.cifar10_example_gen import executor as example_gen
from modules import contract, data, export


@pytest.fixture
def split(tmp_path):
    """A split folder as the ExampleGen writes it: two GZIP TFRecord files of tf.Examples."""
    folder = tmp_path / "Split-test"
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, *contract.IMAGE_SHAPE), dtype=np.uint8)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    for name, rows in (("data_tfrecord-00000-of-00002.gz", range(3)),
                       ("data_tfrecord-00001-of-00002.gz", range(3, 5))):
        with tf.io.TFRecordWriter(str(folder / name), options) as writer:
            for i in rows:
                writer.write(example_gen.to_example(i % contract.NUM_CLASSES, images[i]))
    return folder, images


def test_decoded_images_are_the_written_pixels_in_file_order(split):
    folder, images = split
    decoded, labels = data.decoded_images([data.split_pattern(str(folder))])
    np.testing.assert_array_equal(decoded, images)
    assert labels.tolist() == [0, 1, 2, 3, 4]
    few, few_labels = data.decoded_images([data.split_pattern(str(folder))], limit=2)
    assert few.shape == (2, *contract.IMAGE_SHAPE) and few_labels.tolist() == [0, 1]


def test_encoded_images_are_the_png_bytes(split):
    folder, images = split
    (png,) = data.encoded_images([data.split_pattern(str(folder))], 1)
    assert png.startswith(b"\x89PNG")
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), images[0])


def test_a_split_without_files_names_the_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match="Split-eval"):
        data.decoded_images([data.split_pattern(str(tmp_path / "Split-eval"))])


def test_model_artifact_layout_is_spelled_in_one_place():
    assert export.serving_model_dir("/m/7") == "/m/7/" + contract.SERVING_MODEL_DIR
    assert export.keras_model_dir("/m/7") == "/m/7/" + contract.KERAS_MODEL_DIR
    assert export.model_uri_of_serving_dir(export.serving_model_dir("/m/7") + "/") == "/m/7"
    with pytest.raises(ValueError, match="/m/7/serving: not a Model artifact's SavedModel folder"):
        export.model_uri_of_serving_dir("/m/7/serving")
