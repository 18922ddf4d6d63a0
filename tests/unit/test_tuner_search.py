"""The Tuner's search: the defaults come first, then other points; the proxy budget's subset."""
from __future__ import annotations

import keras
import keras_tuner
import numpy as np
import tensorflow as tf

from modules import contract, data, training


def _tiny_hypermodel(hp: keras_tuner.HyperParameters) -> keras.Model:
    """The real search space over a tiny network: only the values matter here."""
    values = training.search_space(hp)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(values["base_filters"] // 16),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(values["learning_rate"]),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_first_trial_trains_the_defaults_and_later_trials_search(tmp_path, caplog, capsys):
    oracle = training.DefaultsFirstOracle(
        objective=keras_tuner.Objective("val_accuracy", direction="max"), max_trials=3,
        num_initial_points=2, seed=contract.DEFAULT_SEED)
    tuner = training.ConciseTuner(oracle=oracle, hypermodel=_tiny_hypermodel,
                                  directory=str(tmp_path), project_name="search")
    features = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    labels = (features[:, 0] > 0).astype("int64")
    tuner.search(features, labels, validation_data=(features, labels), epochs=1, verbose=0)

    trials = sorted(oracle.trials.values(), key=lambda t: t.trial_id)
    assert len(trials) == 3
    searched = set(training.search_space(keras_tuner.HyperParameters()))
    defaults = {name: contract.DEFAULT_HPARAMS[name] for name in searched}
    assert trials[0].hyperparameters.values == defaults
    assert all(t.hyperparameters.values != defaults for t in trials[1:])
    assert all(t.status == "COMPLETED" for t in trials)

    # What TFX's Tuner executor calls around the search: one log line each, nothing printed.
    capsys.readouterr()
    with caplog.at_level("INFO", logger="cifar10_tfx.training"):
        tuner.search_space_summary()
        tuner.results_summary()
    assert capsys.readouterr().out == ""
    space, result = [r.getMessage() for r in caplog.records if r.name == "cifar10_tfx.training"]
    assert space.startswith("Search space: base_filters [48, 56, 64]; ")
    assert result.startswith("Tuner: 3 trial(s) scored; the best, trial ")


def test_proxy_subset_takes_a_share_of_train_but_at_least_one_batch():
    train = tf.data.Dataset.range(1000)
    subset, count = training.proxy_subset(train, 1000, 0.2, batch_size=64)
    assert count == 200 and len(list(subset)) == 200
    subset, count = training.proxy_subset(train.take(100), 100, 0.2, batch_size=64)
    assert count == 64 and len(list(subset)) == 64
    _, count = training.proxy_subset(train.take(50), 50, 0.2, batch_size=64)
    assert count == 50  # never more than there is


def test_the_trials_training_stream_runs_without_autotuning_over_the_same_images():
    images = np.random.default_rng(1).random((24, *contract.IMAGE_SHAPE)).astype("float32")
    train = tf.data.Dataset.from_tensor_slices((images, np.arange(24) % 10))
    stream = data.training_batches(train, 24, batch_size=8, seed=5)
    quiet = data.without_autotune(stream)
    assert stream.options().autotune.enabled is not False
    assert quiet.options().autotune.enabled is False

    def one_pass(batches: tf.data.Dataset) -> np.ndarray:
        """Images per class over the first 3 batches (one pass over the 24 images)."""
        taken = list(batches.take(3))
        assert all(x.shape == (8, *contract.IMAGE_SHAPE) for x, _ in taken)
        return np.concatenate([y.numpy() for _, y in taken]).sum(axis=0)

    np.testing.assert_array_equal(one_pass(quiet), one_pass(stream))
    np.testing.assert_array_equal(one_pass(quiet), np.bincount(np.arange(24) % 10))
