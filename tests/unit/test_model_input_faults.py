"""Bad input to the exported model (issue #16) and its one preprocessing path (issue #17).

A real SavedModel is exported by modules.export from a real Transform graph (tf.Transform on
Beam) and a small real network, then called the three ways TF Serving's clients reach it:
* over real sockets through tests/support/serving_test_server.py (REST and gRPC),
* through the signatures' graph functions fed directly, which, like TF Serving's Session::Run,
  does not check the fed tensor against the signature's shape,
* in-process through the loaded signatures.
Every refusal must be INVALID_ARGUMENT with one line naming the input, the image and the fault.
"""
from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
import requests
import tensorflow as tf
from PIL import Image

from modules import contract, export, model, preprocessing
from serving.client import build_grpc_request, build_rest_payload, rest_predict_url
from tests.support import serving_test_server as sts

TTA = contract.TTA_FLIP_TRANSLATE  # the level whose reflect padding used to fail on 0 images


def encode(pixels: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    image = Image.fromarray(pixels)
    if mode:
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def random_pixels(n: int, height: int = 32, width: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def example(image: bytes | None = None, **features) -> bytes:
    feature = {key: tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
               for key, value in features.items()}
    if image is not None:
        feature[contract.IMAGE_KEY] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[image]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def png_declaring(height: int, width: int) -> bytes:
    """A 32x32 PNG whose header claims another size: a decompression bomb's header, tiny."""
    data = bytearray(encode(random_pixels(1)[0]))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # a valid IHDR checksum
    return bytes(data)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model_uri, the Transform output, the Keras model) of a real export."""
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    root = tmp_path_factory.mktemp("export")
    spec = {contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            contract.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    rows = [{contract.IMAGE_KEY: encode(p), contract.LABEL_KEY: 1} for p in random_pixels(2)]
    with tft_beam.Context(temp_dir=str(root / "tmp"), force_tf_compat_v1=False):
        transform_fn = (rows, metadata) | tft_beam.AnalyzeDataset(preprocessing.preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(str(root / "transform"))
    metadata_io.write_metadata(metadata,
                               str(root / "transform" / tft.TFTransformOutput.RAW_METADATA_DIR))
    transform_output = tft.TFTransformOutput(str(root / "transform"))
    # float32 whatever the default: the answers below compare with this model's own.
    keras_model = model.build_model({"base_filters": 8, "compute_dtype": "float32"})
    model.set_whitening(keras_model, model.whitening_weights(
        random_pixels(64, seed=3).astype(np.float32) / 255.0))
    model_uri = str(root / "model")
    export.export_serving_model(keras_model, transform_output, model_uri,
                                [encode(p) for p in random_pixels(3, seed=4)], tta=TTA)
    return model_uri, transform_output, keras_model


@pytest.fixture(scope="module")
def saved_model_dir(exported) -> str:
    return export.serving_model_dir(exported[0])


@pytest.fixture(scope="module")
def loaded(saved_model_dir):
    return tf.saved_model.load(saved_model_dir)


@pytest.fixture(scope="module")
def server(saved_model_dir):
    with sts.ServingTestServer(saved_model_dir) as srv:
        yield srv


@pytest.fixture(scope="module")
def session_call(loaded):
    """Calls a signature the way TF Serving does: the graph function on the fed tensor, with
    no check of its shape against the signature's (ConcreteFunction.__call__ would check)."""

    def call(signature: str, value: np.ndarray) -> dict:
        function = loaded.signatures[signature]
        outputs = function._call_flat([tf.constant(value)], function.captured_inputs)
        return {key: tensor.numpy() for key, tensor in outputs.items()}

    return call


def rest(server, signature: str, values) -> requests.Response:
    payload = build_rest_payload(values, signature)
    return requests.post(rest_predict_url(server.rest_url), json=payload, timeout=60)


def grpc_error(server, signature: str, values):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(build_grpc_request(values, signature=signature), timeout=60)
    return info.value


def assert_refused(server, signature: str, values, message: str) -> None:
    """REST answers 400 and gRPC INVALID_ARGUMENT, both with `message` on one line."""
    response = rest(server, signature, values)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert message in error and "\n" not in error
    failure = grpc_error(server, signature, values)
    assert failure.code().name == "INVALID_ARGUMENT"
    assert message in failure.details()


# --------------------------------------------------------------------------------------------
# 1. Only 32x32 images are classified, by every signature, in the graph
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("height,width", [(16, 64), (1, 1024), (64, 16), (10, 10)])
def test_wrong_size_image_bytes_are_refused_in_the_graph(server, height, width):
    good = encode(random_pixels(1)[0])
    bad = encode(random_pixels(1, height, width)[0])
    assert_refused(server, contract.SERVING_SIGNATURE, [good, bad],
                   f"image_bytes[1]: the image is {height}x{width} (height x width); the model "
                   "takes 32x32 PNG or JPEG images")
    jpeg = encode(random_pixels(1, height, width)[0], "JPEG")
    assert_refused(server, contract.SERVING_SIGNATURE, [jpeg],
                   f"image_bytes[0]: the image is {height}x{width}")


@pytest.mark.parametrize("height,width", [(16, 64), (1, 1024)])
def test_wrong_size_image_in_an_example_is_refused(server, height, width):
    examples = [example(encode(random_pixels(1)[0])),
                example(encode(random_pixels(1, height, width)[0]))]
    assert_refused(server, contract.EXAMPLES_SIGNATURE, examples,
                   f"examples[1]: the image is {height}x{width} (height x width)")


@pytest.mark.parametrize("shape", [(1, 16, 64, 3), (2, 64, 16, 3), (1, 32, 32, 4),
                                   (1, 32, 32, 1), (32, 32, 3), (1, 3072), (1, 32, 32, 3, 1),
                                   (3072,)])
def test_wrong_shape_pixels_are_refused_in_the_graph(session_call, shape):
    """TF Serving feeds any shape to the signature: the graph itself must refuse."""
    pixels = np.zeros(shape, np.uint8)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        session_call(contract.PIXELS_SIGNATURE, pixels)
    got = " ".join(str(d) for d in shape)
    assert f"pixels: expected uint8 [N, 32, 32, 3], got shape [{got}]" in info.value.message


@pytest.mark.parametrize("shape", [(1, 1), ()])
def test_wrong_shape_strings_are_refused_in_the_graph(session_call, shape):
    strings = np.array(encode(random_pixels(1)[0]), dtype=object).reshape(shape)
    got = " ".join(str(d) for d in shape)
    for signature, name in ((contract.SERVING_SIGNATURE, "image_bytes"),
                            (contract.EXAMPLES_SIGNATURE, "examples")):
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            session_call(signature, strings)
        assert f"{name}: expected a vector of strings [N], got shape [{got}]" in \
            info.value.message


def test_wrong_shape_pixels_over_the_wire_are_refused(server):
    assert_refused(server, contract.PIXELS_SIGNATURE, random_pixels(1, 16, 64), "pixels")


def test_right_shapes_through_the_session_equal_the_signatures(session_call, loaded):
    pixels = random_pixels(3, seed=8)
    want = loaded.signatures[contract.PIXELS_SIGNATURE](pixels=tf.constant(pixels))
    got = session_call(contract.PIXELS_SIGNATURE, pixels)
    np.testing.assert_allclose(got[contract.PROBABILITIES_OUTPUT],
                               want[contract.PROBABILITIES_OUTPUT].numpy(), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# 14. An empty batch gets empty outputs
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("signature", [contract.SERVING_SIGNATURE, contract.PIXELS_SIGNATURE,
                                       contract.EXAMPLES_SIGNATURE])
def test_empty_batch_gets_empty_outputs(loaded, server, session_call, signature):
    key = contract.SIGNATURE_INPUTS[signature]
    empty = np.zeros((0, *contract.IMAGE_SHAPE), np.uint8) \
        if signature == contract.PIXELS_SIGNATURE else np.zeros((0,), object)
    for outputs in (loaded.signatures[signature](**{key: tf.constant(empty)}),
                    session_call(signature, empty)):
        outputs = {k: np.asarray(v) for k, v in outputs.items()}
        assert outputs[contract.PROBABILITIES_OUTPUT].shape == (0, contract.NUM_CLASSES)
        assert outputs[contract.PROBABILITIES_OUTPUT].dtype == np.float32
        assert outputs[contract.CLASS_ID_OUTPUT].shape == (0,)
        assert outputs[contract.CLASS_NAME_OUTPUT].shape == (0,)
    # over gRPC (REST refuses an empty 'instances' list before the model, as TF Serving does)
    from tensorflow_serving.apis import predict_pb2

    request = build_grpc_request(empty if signature == contract.PIXELS_SIGNATURE else [],
                                 signature=signature)
    response = server.model.predict(predict_pb2.PredictRequest.FromString(
        request.SerializeToString()))
    assert tf.make_ndarray(response.outputs[contract.PROBABILITIES_OUTPUT]).shape == (0, 10)


# --------------------------------------------------------------------------------------------
# 15. Garbage bytes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("garbage", [b"\xff\xfe\x80garbage\xc3\x28", b"", b"\x0a\x05abc",
                                     "ünïcödé".encode()], ids=["binary", "empty", "truncated",
                                                               "utf8"])
def test_garbage_examples_are_invalid_argument_naming_the_input(server, garbage):
    good = example(encode(random_pixels(1)[0]))
    assert_refused(server, contract.EXAMPLES_SIGNATURE, [good, good, garbage],
                   "examples[2]: not a serialized tf.Example with one bytes feature image")


def test_examples_without_an_image_are_refused(server):
    assert_refused(server, contract.EXAMPLES_SIGNATURE, [example(label=3)],
                   "examples[0]: not a serialized tf.Example with one bytes feature image")


@pytest.mark.parametrize("garbage", [b"\xff\xfe\x80garbage", b"", b"GIF89a" + b"\0" * 40])
def test_garbage_image_bytes_are_invalid_argument_naming_the_input(server, garbage):
    assert_refused(server, contract.SERVING_SIGNATURE, [encode(random_pixels(1)[0]), garbage],
                   f"image_bytes[1]: not a PNG or JPEG image ({len(garbage)} bytes)")


def test_an_example_holding_garbage_names_the_example(server):
    assert_refused(server, contract.EXAMPLES_SIGNATURE, [example(b"\x00\x01garbage")],
                   "examples[0]: not a PNG or JPEG image (9 bytes)")


# --------------------------------------------------------------------------------------------
# 12. Huge declared sizes are refused from the header, before any decoding
# --------------------------------------------------------------------------------------------
def test_decompression_bomb_header_is_refused_without_decoding(server):
    assert_refused(server, contract.SERVING_SIGNATURE, [png_declaring(50000, 50000)],
                   "image_bytes[0]: the image is 50000x50000 (height x width)")


def test_a_large_real_png_over_rest_fails_cleanly(server):
    gradient = np.broadcast_to(np.arange(2000, dtype=np.uint8)[:, None, None], (2000, 2000, 3))
    big = encode(np.ascontiguousarray(gradient))  # a real 2000x2000 PNG, small enough for gRPC
    assert_refused(server, contract.SERVING_SIGNATURE, [big],
                   "image_bytes[0]: the image is 2000x2000 (height x width)")


# --------------------------------------------------------------------------------------------
# What a careless client sends
# --------------------------------------------------------------------------------------------
def test_grayscale_and_rgba_32x32_pngs_are_converted_to_rgb(loaded):
    pixels = random_pixels(1, seed=6)[0]
    gray = np.repeat(np.asarray(Image.fromarray(pixels).convert("L"))[..., None], 3, axis=-1)
    signature = loaded.signatures[contract.SERVING_SIGNATURE]
    by_rgba = signature(image_bytes=tf.constant([encode(pixels, mode="RGBA")]))
    by_rgb = signature(image_bytes=tf.constant([encode(pixels)]))
    np.testing.assert_allclose(by_rgba[contract.PROBABILITIES_OUTPUT].numpy(),
                               by_rgb[contract.PROBABILITIES_OUTPUT].numpy(), rtol=1e-6)
    by_gray = signature(image_bytes=tf.constant([encode(pixels, mode="L")]))
    by_gray_pixels = loaded.signatures[contract.PIXELS_SIGNATURE](pixels=tf.constant(gray[None]))
    np.testing.assert_allclose(by_gray[contract.PROBABILITIES_OUTPUT].numpy(),
                               by_gray_pixels[contract.PROBABILITIES_OUTPUT].numpy(), rtol=1e-6)


@pytest.mark.parametrize("values,message", [
    ([[[[0.5] * 3] * 32] * 32], "does not convert to uint8"),
    ([[[[300] * 3] * 32] * 32], "does not convert to uint8"),
    ([[[[-1] * 3] * 32] * 32], "does not convert to uint8"),
])
def test_wrong_dtype_pixels_over_rest_are_refused(server, values, message):
    body = {"signature_name": contract.PIXELS_SIGNATURE, "instances": values}
    response = requests.post(rest_predict_url(server.rest_url), json=body, timeout=60)
    assert response.status_code == 400 and message in response.json()["error"]


# --------------------------------------------------------------------------------------------
# Issue #17: one preprocessing path; the answers do not change
# --------------------------------------------------------------------------------------------
def test_three_signatures_agree_and_pixels_answer_as_before(exported, loaded):
    _, transform_output, keras_model = exported
    pixels = random_pixels(6, seed=12)
    pngs = [encode(p) for p in pixels]
    signatures = loaded.signatures
    by_pixels = signatures[contract.PIXELS_SIGNATURE](pixels=tf.constant(pixels))
    by_bytes = signatures[contract.SERVING_SIGNATURE](image_bytes=tf.constant(pngs))
    by_examples = signatures[contract.EXAMPLES_SIGNATURE](
        examples=tf.constant([example(png, label=1) for png in pngs]))
    # Before issue #17: pixels were encoded to PNG and went through the Transform graph.
    transformed = transform_output.transform_features_layer()(
        {contract.IMAGE_KEY: tf.constant(pngs)})[contract.TRANSFORMED_IMAGE_KEY]
    before = export.predict_probabilities(keras_model, transformed, TTA).numpy()
    for outputs in (by_pixels, by_bytes, by_examples):
        np.testing.assert_allclose(outputs[contract.PROBABILITIES_OUTPUT].numpy(), before,
                                   rtol=1e-5, atol=1e-6)
        assert outputs[contract.CLASS_ID_OUTPUT].numpy().tolist() == \
            np.argmax(before, axis=1).tolist()


def test_pixels_signature_has_no_png_round_trip(loaded):
    graph = loaded.signatures[contract.PIXELS_SIGNATURE].graph.as_graph_def()
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops |= {node.op for node in function.node_def}
    assert not ops & {"EncodePng", "DecodePng", "DecodeImage"}


def test_export_refuses_a_transform_graph_that_disagrees(exported):
    _, transform_output, _ = exported

    class Drifted:
        """A Transform output whose graph scales to [-1, 1] instead of [0, 1]."""

        def transform_features_layer(self):
            def layer(features):
                images = transform_output.transform_features_layer()(features)
                return {contract.TRANSFORMED_IMAGE_KEY:
                        images[contract.TRANSFORMED_IMAGE_KEY] * 2.0 - 1.0}
            return layer

    with pytest.raises(ValueError, match="prepares images differently"):
        export.check_transform_matches(Drifted(), [encode(random_pixels(1)[0])])


def test_warmup_file_is_still_written(saved_model_dir):
    path = f"{saved_model_dir}/{contract.WARMUP_FILE}"
    assert len(list(tf.data.TFRecordDataset(path))) == 3


def test_a_bfloat16_network_is_exported_computing_in_float32(exported, tmp_path):
    _, transform_output, _ = exported
    mixed = model.build_model({"base_filters": 8, "compute_dtype": "bfloat16"})
    model.set_whitening(mixed, model.whitening_weights(
        random_pixels(64, seed=3).astype(np.float32) / 255.0))
    model_uri = str(tmp_path / "model")
    export.export_serving_model(mixed, transform_output, model_uri,
                                [encode(p) for p in random_pixels(3, seed=4)])
    keras_model, _ = export.load_keras_model(model_uri)
    assert {layer.compute_dtype for layer in keras_model.layers} == {"float32"}
    pixels = random_pixels(4, seed=5)
    served = tf.saved_model.load(export.serving_model_dir(model_uri)).signatures[
        contract.PIXELS_SIGNATURE](pixels=tf.constant(pixels))[contract.PROBABILITIES_OUTPUT]
    np.testing.assert_allclose(
        served.numpy(), keras_model(preprocessing.scale_pixels(tf.constant(pixels))).numpy(),
        rtol=1e-5, atol=1e-6)
