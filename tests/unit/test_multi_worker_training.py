"""Issue #15: the single-process parts of modules.training's multi-worker support.

The real thing, two worker processes through TFX's Trainer executor, is
tests/e2e/test_multi_worker.py; these pin what that test cannot see quickly.
"""
from __future__ import annotations

import inspect
import os
import tempfile
import types

import keras
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as keras_tf_trainer

from modules import contract, export, training
from modules import model as model_lib


def test_the_keras_bugs_worked_around_are_still_there():
    """When Keras fixes keras-team/keras#20585 and the scalar axis=0 reduction, this fails:
    then drop training.keras_multi_worker_fixes."""
    assert 'strategy.reduce("MEAN", v, axis=0)' in inspect.getsource(
        keras_tf_trainer.reduce_per_replica)
    assert "self.distribute_strategy.reduce(" in inspect.getsource(
        keras_tf_trainer.TensorFlowTrainer._maybe_symbolic_build)


def test_the_fixes_touch_nothing_without_multi_worker_training():
    model = model_lib.build_model({"base_filters": 8})
    original = keras_tf_trainer.reduce_per_replica
    with training.keras_multi_worker_fixes(model, tf.distribute.get_strategy()):
        assert keras_tf_trainer.reduce_per_replica is original
        assert "_maybe_symbolic_build" not in vars(model)
    assert keras_tf_trainer.reduce_per_replica is original


def test_a_single_process_is_its_own_chief_and_writes_the_real_outputs(tmp_path):
    strategy = tf.distribute.get_strategy()
    assert training._is_chief(strategy)
    fn_args = types.SimpleNamespace(
        serving_model_dir=export.serving_model_dir(str(tmp_path / "model")),
        model_run_dir=str(tmp_path / "model_run"))
    assert training._output_dirs(fn_args, chief=True) == (str(tmp_path / "model"),
                                                          str(tmp_path / "model_run"))


def test_other_workers_write_to_fresh_scratch_space(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    fn_args = types.SimpleNamespace(
        serving_model_dir=export.serving_model_dir(str(tmp_path / "artifacts" / "model")),
        model_run_dir=str(tmp_path / "artifacts" / "model_run"))
    first = training._output_dirs(fn_args, chief=False)
    second = training._output_dirs(fn_args, chief=False)
    assert first != second
    for path in (*first, *second):
        assert path.startswith(str(scratch)), path
        assert os.path.isdir(os.path.dirname(path))


def test_datasets_are_sharded_by_data_not_by_file():
    dataset = training._sharded(tf.data.Dataset.range(4))
    assert (dataset.options().experimental_distribute.auto_shard_policy
            == tf.data.experimental.AutoShardPolicy.DATA)


def test_batchnorm_synchronisation_is_switched_on_and_off():
    model = model_lib.build_model({"base_filters": 8})
    norms = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert norms and not any(la.synchronized for la in norms)
    training._synchronize_batchnorm(model, True)
    assert all(la.synchronized for la in norms)
    training._synchronize_batchnorm(model, False)
    assert not any(la.synchronized for la in norms)


def test_weights_fingerprints_see_trainable_and_moving_statistics():
    model = model_lib.build_model({"base_filters": 8})
    before = training.weights_fingerprints(model)
    assert before == training.weights_fingerprints(model)
    norm = next(la for la in model.layers if isinstance(la, keras.layers.BatchNormalization))
    norm.moving_mean.assign(norm.moving_mean + 1.0)
    after = training.weights_fingerprints(model)
    assert after["trainable"] == before["trainable"]
    assert after["non_trainable"] != before["non_trainable"]


def test_the_collective_timeout_has_a_default():
    assert contract.DEFAULT_COLLECTIVE_TIMEOUT_S > 0
