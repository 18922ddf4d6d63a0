"""The network: shapes, probabilities, size budget, and the tuner's search space."""
from __future__ import annotations

import keras
import keras_tuner
import numpy as np
import pytest
import tensorflow as tf

from modules import contract, export, model, training


def test_output_is_ten_probabilities_per_image():
    net = model.build_model()
    out = net(np.random.rand(5, *contract.IMAGE_SHAPE).astype("float32"), training=False)
    assert out.shape == (5, contract.NUM_CLASSES)
    np.testing.assert_allclose(np.asarray(out).sum(axis=1), 1.0, rtol=1e-5)


def test_has_batchnorm_and_dropout_and_stays_under_a_million_parameters():
    net = model.build_model()
    kinds = {type(layer).__name__ for layer in net.layers}
    assert {"BatchNormalization", "Dropout", "Conv2D"} <= kinds
    assert net.count_params() < 1_000_000


def test_compiles_and_trains_a_step():
    net = model.compile_model(model.build_model({"base_filters": 8}), None, total_steps=10)
    x = np.random.rand(8, *contract.IMAGE_SHAPE).astype("float32")
    y = keras.utils.to_categorical(np.arange(8) % 10, contract.NUM_CLASSES)
    history = net.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_search_space_covers_filters_dropout_and_learning_rate():
    hp = keras_tuner.HyperParameters()
    values = training.search_space(hp)
    assert {"base_filters", "dropout", "learning_rate"} <= set(values)
    assert set(values) <= set(contract.DEFAULT_HPARAMS)
    assert {name: hp.get(name) for name in values} == {
        name: contract.DEFAULT_HPARAMS[name] for name in values}  # the first trial: defaults


def test_levers_shape_the_network():
    net = model.build_model({"base_filters": 8, "stage2_width": 2.5, "activation": "gelu"})
    assert [net.get_layer(f"block{i}_conv2").filters for i in (1, 2, 3)] == [8, 20, 24]
    assert net.get_layer("block1_act1").activation.__name__ == "gelu"
    with pytest.raises(ValueError, match="Unknown activation 'swish'"):
        model.build_model({"activation": "swish"})
    with pytest.raises(ValueError, match="ema_momentum must be in"):
        model.compile_model(model.build_model({"base_filters": 8}), {"ema_momentum": 1.0}, 10)


def test_linear_schedule_warms_up_then_falls_in_a_line_to_the_floor():
    schedule = model.learning_rate_schedule("linear", peak=1.0, total_steps=100)
    rates = [float(schedule(step)) for step in (0, 10, 20, 60, 100, 150)]
    np.testing.assert_allclose(rates, [0.2, 0.6, 1.0, 0.51, 0.02, 0.02], atol=1e-6)
    assert isinstance(keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)), model.WarmupLinearDecay)
    cosine = model.learning_rate_schedule("cosine", peak=1.0, total_steps=100)
    np.testing.assert_allclose([float(cosine(step)) for step in (0, 20, 100)], [0.2, 1.0, 0.02],
                               atol=1e-6)  # the same ends: only the shape between differs
    with pytest.raises(ValueError, match="Unknown lr_schedule 'step'"):
        model.compile_model(model.build_model({"base_filters": 8}), {"lr_schedule": "step"}, 10)


def test_weight_average_ends_in_the_model_and_batchnorm_is_recalibrated_for_it():
    # The whitening bias stops training mid-fit, the stem leaving the trainable weights: the
    # averages still land on their own variables.
    hparams = {"base_filters": 8, "ema_momentum": 0.5, "whitening_bias_share": 0.5,
               "compute_dtype": "float32"}  # whatever the default: bfloat16 blurs the statistics
    net = model.compile_model(model.build_model(hparams), hparams, total_steps=4, batch_size=8)
    assert net.optimizer.use_ema
    rng = np.random.default_rng(3)
    x = rng.random((32, *contract.IMAGE_SHAPE)).astype("float32")
    y = keras.utils.to_categorical(np.arange(32) % 10, contract.NUM_CLASSES)
    net.fit(x, y, batch_size=8, epochs=1, verbose=0,
            callbacks=model.training_callbacks(hparams, total_steps=4, batch_size=8))
    assert not net.get_layer("whitening").trainable
    averages = [np.asarray(v) for v in net.optimizer._model_variables_moving_average]  # noqa: SLF001
    built_with = net.optimizer._trainable_variables  # noqa: SLF001
    for variable, average in zip(built_with, averages, strict=True):
        np.testing.assert_allclose(np.asarray(variable), average, atol=1e-6)

    # Whole-set batches: every batch has the set's mean, so the moving mean must reach it (with
    # smaller batches it is a momentum-weighted mix of their means, off by their spread). The old
    # statistics keep a weight of 0.8**40 (~1e-4), relative: an untrained net's means reach the
    # hundreds here, so an absolute tolerance alone failed about one run in twelve.
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).repeat()
    model.recalibrate_batchnorm(net, batches)
    bn = net.get_layer("block1_bn1")
    bn_input = keras.Model(net.inputs, net.get_layer("block1_pool").output)(x, training=False)
    np.testing.assert_allclose(np.asarray(bn.moving_mean),
                               np.asarray(bn_input).mean(axis=(0, 1, 2)), rtol=1e-3, atol=0.01)


def test_whitening_bias_trains_in_its_first_steps_only_and_the_filters_never():
    assert not model.build_model({"whitening_bias_share": 0.0}).get_layer("whitening").trainable
    hparams = {"base_filters": 8, "whitening_bias_share": 0.5}
    net = model.compile_model(model.build_model(hparams), hparams, total_steps=4, batch_size=8)
    [freeze] = model.training_callbacks(hparams, total_steps=4, batch_size=8)
    stem = net.get_layer("whitening")
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((np.asarray(stem.kernel).copy(), np.asarray(stem.bias).copy(),
                         stem.trainable))

    rng = np.random.default_rng(3)
    x = rng.random((32, *contract.IMAGE_SHAPE)).astype("float32")
    y = keras.utils.to_categorical(np.arange(32) % 10, contract.NUM_CLASSES)
    kernel, bias = np.asarray(stem.kernel).copy(), np.asarray(stem.bias).copy()
    net.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[freeze, Record()])
    assert [np.array_equal(k, kernel) for k, _, _ in seen] == [True] * 4
    assert [np.array_equal(b, bias) for _, b, _ in seen] == [False, False, False, False]
    assert [np.array_equal(b, seen[1][1]) for _, b, _ in seen] == [False, True, True, True]
    assert [trainable for _, _, trainable in seen] == [True, False, False, False]
    assert not any(w.path.startswith("whitening/") for w in net.trainable_weights)


def test_whitening_bias_share_sets_the_callbacks():
    assert model.training_callbacks({"whitening_bias_share": 0.0}, 100, 256) == []
    assert model.training_callbacks({"whitening_bias_share": 1.0}, 100, 256) == []  # never ends
    [freeze] = model.training_callbacks({}, 100, 256)  # the defaults' 30%
    assert freeze.steps == 30
    assert model.build_model({"whitening_bias_share": 1.0}).get_layer("whitening").trainable
    with pytest.raises(ValueError, match="whitening_bias_share must be in"):
        model.build_model({"base_filters": 8, "whitening_bias_share": 1.5})


def _state(net: keras.Model) -> list[np.ndarray]:
    """Weights and BatchNorm moving statistics: what lookahead averages."""
    return [np.asarray(w) for w in net.weights if w.trainable or "moving" in w.path]


def _fit_with_lookahead(lookahead: model.Lookahead) -> tuple[list, list]:
    """The model state before and after 12 steps of batch 8 with `lookahead`."""
    hparams = {"base_filters": 8}
    net = model.compile_model(model.build_model(hparams), hparams, total_steps=12, batch_size=8)
    rng = np.random.default_rng(5)
    x = rng.random((96, *contract.IMAGE_SHAPE)).astype("float32")
    y = keras.utils.to_categorical(np.arange(96) % 10, contract.NUM_CLASSES)
    before = _state(net)
    net.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[lookahead])
    return before, _state(net)


def test_lookahead_inertia_grows_with_the_cube_of_progress():
    lookahead = model.Lookahead(total_steps=100, period=5)
    assert lookahead.decay(0) == 0.0
    assert lookahead.decay(50) == pytest.approx(model.LOOKAHEAD_FINAL_DECAY / 8)
    assert lookahead.decay(100) == lookahead.decay(130) == pytest.approx(0.95 ** 5)
    off = {"whitening_bias_share": 0.0}
    [callback] = model.training_callbacks({**off, "lookahead_images": 5120}, 100, 256)
    assert (callback.total_steps, callback.period) == (100, 20)
    [callback] = model.training_callbacks({**off, "lookahead_images": 100}, 100, 256)
    assert callback.period == 1


def test_lookahead_ends_on_the_slow_copy_batchnorm_statistics_included():
    # Full inertia at every pull: the slow copy never moves, so the model ends where it started,
    # its BatchNorm moving statistics too, however far the 12 steps took it.
    before, after = _fit_with_lookahead(model.Lookahead(total_steps=1, period=5, final_decay=1.0))
    for start, end in zip(before, after, strict=True):
        np.testing.assert_allclose(end, start, atol=1e-6)
    # No inertia: each pull hands the trained state on, so the model ends where training did.
    lookahead = model.Lookahead(total_steps=12, period=5, final_decay=0.0)
    before, after = _fit_with_lookahead(lookahead)
    assert any(not np.allclose(start, end) for start, end in zip(before, after, strict=True))
    for slow, end in zip(lookahead._slow, after, strict=True):  # noqa: SLF001
        np.testing.assert_allclose(np.asarray(slow), end, atol=1e-6)


def _smooth_images(count: int = 64) -> np.ndarray:
    """Correlated, image-like pixels (neighbours alike), so whitening has something to undo."""
    rng = np.random.default_rng(0)
    noise = rng.random((count, 33, 33, 3))
    images = (noise[:, 1:, 1:] + noise[:, :-1, :-1] + noise[:, 1:, :-1] + noise[:, :-1, 1:]) / 4
    return (0.5 * images + 0.5 * images.mean(axis=3, keepdims=True)).astype("float32")


def test_whitening_stem_decorrelates_patches():
    images = _smooth_images()
    net = model.build_model()
    model.set_whitening(net, model.whitening_weights(images))
    stem = net.get_layer("whitening")
    features = np.asarray(stem(images)).reshape(-1, stem.filters)
    half = features[:, : stem.filters // 2]  # the other half is its negative
    np.testing.assert_allclose(features[:, stem.filters // 2:], -half, atol=1e-4)
    np.testing.assert_allclose(half.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.cov(half, rowvar=False), np.eye(half.shape[1]), atol=0.05)


def test_whitening_rejects_a_batch_of_the_wrong_shape():
    with pytest.raises(ValueError, match="Whitening needs a batch of images"):
        model.whitening_weights(np.zeros((4, 28, 28, 1)))


def test_block_convolutions_start_as_identity_on_their_first_channels():
    kernel = np.asarray(model.build_model().get_layer("block2_conv2").kernel)
    channels = kernel.shape[2]
    centre = kernel[1, 1, :, :channels]
    np.testing.assert_array_equal(centre, np.eye(channels))
    assert not kernel[0, 0, :, :channels].any()


def test_optimizer_scales_batchnorm_bias_gradients_and_adds_l2():
    beta = keras.Variable(np.ones(3, "float32"), name="beta")
    kernel = keras.Variable(np.ones(3, "float32"), name="kernel")
    optimizer = model.WhitenedNetSGD(learning_rate=0.01, l2=0.5, bias_gradient_scale=10.0)
    optimizer.apply([np.full(3, 0.1, "float32")] * 2, [beta, kernel])
    np.testing.assert_allclose(np.asarray(beta), 1 - 0.01 * (10 * 0.1 + 0.5), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(kernel), 1 - 0.01 * (0.1 + 0.5), rtol=1e-5)


def test_compiled_model_saves_and_loads_with_its_optimizer(tmp_path):
    net = model.compile_model(model.build_model({"base_filters": 8}), None, total_steps=10,
                              batch_size=8)
    x = np.random.rand(8, *contract.IMAGE_SHAPE).astype("float32")
    y = keras.utils.to_categorical(np.arange(8) % 10, contract.NUM_CLASSES)
    net.fit(x, y, epochs=1, verbose=0)
    net.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.optimizer, model.WhitenedNetSGD)
    assert loaded.optimizer.l2 == pytest.approx(contract.DEFAULT_HPARAMS["weight_decay"])
    np.testing.assert_allclose(loaded.predict(x, verbose=0), net.predict(x, verbose=0), atol=1e-5)


def test_bfloat16_trains_with_float32_weights_and_exports_a_float32_twin():
    hparams = {"base_filters": 8, "compute_dtype": "bfloat16"}
    net = model.compile_model(model.build_model(hparams), hparams, total_steps=10)
    assert net.get_layer("block2_conv1").compute_dtype == "bfloat16"
    assert {variable.dtype for variable in net.weights} == {"float32"}
    assert net.get_layer(contract.PROBABILITIES_OUTPUT).compute_dtype == "float32"
    x = np.random.default_rng(0).random((8, *contract.IMAGE_SHAPE), dtype=np.float32)
    net.fit(x, keras.utils.to_categorical(np.arange(8) % 10, contract.NUM_CLASSES), verbose=0,
            batch_size=2, callbacks=model.training_callbacks(hparams, total_steps=4, batch_size=2))
    assert not net.get_layer("whitening").trainable  # the frozen stem stays frozen in the twin

    twin = export.float32_twin(net)
    assert {layer.compute_dtype for layer in twin.layers} == {"float32"}
    assert not twin.get_layer("whitening").trainable
    for ours, theirs in zip(net.weights, twin.weights, strict=True):
        assert ours.path == theirs.path
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    float_build = model.build_model({**hparams, "compute_dtype": "float32"})
    float_build.set_weights(twin.get_weights())
    np.testing.assert_allclose(twin.predict(x, verbose=0), float_build.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)  # the network itself, in float32
    np.testing.assert_allclose(twin.predict(x, verbose=0), net.predict(x, verbose=0),
                               atol=0.05)  # bfloat16 keeps about 3 significant digits
    float_net = model.build_model({"base_filters": 8, "compute_dtype": "float32"})
    assert export.float32_twin(float_net) is float_net


def test_compute_dtype_auto_takes_bfloat16_only_on_a_cpu_that_has_it(monkeypatch):
    def machine(bfloat16_cpu: bool, gpus: list) -> None:
        monkeypatch.setattr(model, "native_bfloat16", lambda: bfloat16_cpu)
        monkeypatch.setattr(model.tf.config, "list_physical_devices",
                            lambda kind=None: gpus if kind == "GPU" else [])

    machine(bfloat16_cpu=True, gpus=[])
    assert model.compute_dtype({"compute_dtype": "auto"}) == "bfloat16"
    machine(bfloat16_cpu=False, gpus=[])
    assert model.compute_dtype({"compute_dtype": "auto"}) == "float32"
    machine(bfloat16_cpu=True, gpus=["/physical_device:GPU:0"])  # the model trains there
    assert model.compute_dtype({"compute_dtype": "auto"}) == "float32"
    assert model.compute_dtype({"compute_dtype": "bfloat16"}) == "bfloat16"
    assert model.compute_dtype(None) == contract.DEFAULT_HPARAMS["compute_dtype"]
    with pytest.raises(ValueError, match="Unknown compute_dtype 'float16'"):
        model.build_model({"compute_dtype": "float16"})


@pytest.mark.parametrize("text, native", [
    ("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx512_vnni\n", True),
    ("flags\t\t: fpu sse2 amx_bf16 amx_tile\n", True),
    ("flags\t\t: fpu sse2 avx2 avx512f\n", False),
    ("processor\t: 0\n", False),
])
def test_native_bfloat16_reads_the_cpu_flags(tmp_path, text, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    assert model.native_bfloat16(str(cpuinfo)) is native
    assert model.native_bfloat16(str(tmp_path / "absent")) is False  # not Linux
