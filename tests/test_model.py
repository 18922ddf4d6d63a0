"""The network: shapes, probabilities, size budget, and the tuner's search space."""
from __future__ import annotations

import keras
import keras_tuner
import numpy as np

from modules import constants, model, training


def test_output_is_ten_probabilities_per_image():
    net = model.build_model()
    out = net(np.random.rand(5, *constants.IMAGE_SHAPE).astype("float32"), training=False)
    assert out.shape == (5, constants.NUM_CLASSES)
    np.testing.assert_allclose(np.asarray(out).sum(axis=1), 1.0, rtol=1e-5)


def test_has_batchnorm_and_dropout_and_stays_under_a_million_parameters():
    net = model.build_model()
    kinds = {type(layer).__name__ for layer in net.layers}
    assert {"BatchNormalization", "Dropout", "Conv2D"} <= kinds
    assert net.count_params() < 1_000_000


def test_compiles_and_trains_a_step():
    net = model.compile_model(model.build_model({"base_filters": 8}), None, total_steps=10)
    x = np.random.rand(8, *constants.IMAGE_SHAPE).astype("float32")
    y = keras.utils.to_categorical(np.arange(8) % 10, constants.NUM_CLASSES)
    history = net.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_search_space_covers_filters_dropout_and_learning_rate():
    hp = keras_tuner.HyperParameters()
    values = training.search_space(hp)
    assert {"base_filters", "dropout", "learning_rate"} <= set(values)
    assert set(model.DEFAULT_HPARAMS) == set(values)
