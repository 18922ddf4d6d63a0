"""The real pushed model behind TF Serving's APIs: signatures, exact payloads, warmup, client.

Everything here runs against the SavedModel that the e2e pipeline run (`trained_pipeline`)
pushed into its TF Serving base path, and compares with calling that model's signatures
in-process ("direct"):

* the exact REST bodies `serving.client.build_rest_payload` makes (row `instances` and columnar
  `inputs`, `{"b64": ...}` for bytes), sent through JSON, turned into a real `PredictRequest`
  the way TF Serving does (`serving_test_server.rest_predict_request`: TensorProtos of the
  signature's dtypes), answered through tf.make_ndarray / tf.make_tensor_proto and turned back
  into the JSON TF Serving answers; and the gRPC `PredictRequest`s `build_grpc_request` makes,
  through their wire format; for all three signatures;
* the warmup records in `assets.extra/tf_serving_warmup_requests`, parsed as `PredictionLog`s
  and replayed as TF Serving replays them (the request's signature and inputs);
* `ServingClient` over real sockets (REST row and columnar, gRPC) against
  `serving_test_server.ServingTestServer` serving the pushed model.
"""
from __future__ import annotations

import io
import itertools
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from modules import cifar10_binary, contract
from serving.client import (
    SIGNATURE_INPUTS,
    ServingClient,
    build_grpc_request,
    build_rest_payload,
    parse_grpc_response,
    parse_rest_response,
    rest_predict_url,
)
from tests.support import serving_test_server as sts

pytestmark = pytest.mark.e2e

SIGNATURES = (contract.SERVING_SIGNATURE, contract.PIXELS_SIGNATURE,
              contract.EXAMPLES_SIGNATURE)
OUTPUTS = {contract.PROBABILITIES_OUTPUT, contract.CLASS_ID_OUTPUT,
           contract.CLASS_NAME_OUTPUT}
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
TF_SERVING_MAX_WARMUP_RECORDS = 1000  # TF Serving refuses a warmup file with more records
IMAGE_COUNT = 8


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pushed_model_dir(trained_pipeline) -> str:
    """The one version folder the pipeline pushed into its TF Serving base path."""
    (version,) = trained_pipeline.versions(trained_pipeline.serving_dir)
    return str(trained_pipeline.serving_dir / version)


@pytest.fixture(scope="module")
def direct(pushed_model_dir):
    """The pushed SavedModel loaded in-process on its own: the expected answers."""
    return tf.saved_model.load(pushed_model_dir)


@pytest.fixture(scope="module")
def server(pushed_model_dir):
    """The test server backed by the pushed model; `server.model` is the model it serves."""
    with sts.ServingTestServer(pushed_model_dir) as srv:
        yield srv


@pytest.fixture(scope="module")
def cifar_pixels(small_cifar10) -> np.ndarray:
    """Real CIFAR-10 test images, uint8 [8, 32, 32, 3]."""
    path = small_cifar10 / "cifar-10-batches-bin" / "test_batch.bin"
    records = itertools.islice(cifar10_binary.read_records(str(path)), IMAGE_COUNT)
    return np.stack([r.image for r in records])


def encode(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def image_only_example(png: bytes) -> bytes:
    """A serialized tf.Example holding only the `image` feature, as batch jobs send it."""
    return tf.train.Example(features=tf.train.Features(feature={
        contract.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
    })).SerializeToString()


def client_inputs(signature: str, pixels: np.ndarray):
    """(what the client sends, the same as the signature's keyword arguments)."""
    key = SIGNATURE_INPUTS[signature]
    if signature == contract.PIXELS_SIGNATURE:
        return pixels, {key: pixels}
    pngs = [encode(p) for p in pixels]
    if signature == contract.SERVING_SIGNATURE:  # PNGs and JPEGs, sent as they are
        images = pngs[:-2] + [encode(p, "JPEG") for p in pixels[-2:]]
    else:
        images = [image_only_example(png) for png in pngs]
    return images, {key: images}


def call_direct(model, signature: str, inputs: dict) -> dict:
    outputs = model.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


def assert_outputs_close(got: dict, want: dict) -> None:
    assert set(got) == set(want) == OUTPUTS
    np.testing.assert_allclose(got[contract.PROBABILITIES_OUTPUT],
                               want[contract.PROBABILITIES_OUTPUT], rtol=1e-5, atol=1e-6)
    assert got[contract.CLASS_ID_OUTPUT].tolist() == want[contract.CLASS_ID_OUTPUT].tolist()
    assert got[contract.CLASS_NAME_OUTPUT].tolist() == want[contract.CLASS_NAME_OUTPUT].tolist()


def assert_predictions_close(predictions, want: dict) -> None:
    """`Prediction`s from the client's parsers equal the direct call's outputs."""
    probabilities = want[contract.PROBABILITIES_OUTPUT]
    assert len(predictions) == len(probabilities)
    np.testing.assert_allclose([p.probabilities for p in predictions], probabilities,
                               rtol=1e-5, atol=1e-6)
    assert [p.class_id for p in predictions] == want[contract.CLASS_ID_OUTPUT].tolist()
    assert [p.class_name for p in predictions] == [
        n.decode() for n in want[contract.CLASS_NAME_OUTPUT]]


def assert_input_tensor(proto, signature: str, want) -> None:
    """The TensorProto carries exactly the client's inputs, with the signature's dtype."""
    if signature == contract.PIXELS_SIGNATURE:
        assert proto.dtype == tf.uint8.as_datatype_enum
        assert [d.size for d in proto.tensor_shape.dim] == [len(want), *contract.IMAGE_SHAPE]
        np.testing.assert_array_equal(tf.make_ndarray(proto), want)
    else:
        assert proto.dtype == tf.string.as_datatype_enum
        assert [d.size for d in proto.tensor_shape.dim] == [len(want)]
        assert list(proto.string_val) == list(want)  # the raw bytes, b64 decoded


# --------------------------------------------------------------------------------------------
# The pushed model's signatures
# --------------------------------------------------------------------------------------------
def test_pushed_model_has_the_three_documented_signatures(direct):
    # and batch_examples: serving_examples without class_names, for BulkInferrer (serving/README)
    assert set(direct.signatures) == set(SIGNATURES) | {contract.BATCH_EXAMPLES_SIGNATURE}
    assert set(SIGNATURES) == set(SIGNATURE_INPUTS)
    for signature, key in SIGNATURE_INPUTS.items():
        function = direct.signatures[signature]
        inputs = function.structured_input_signature[1]
        assert list(inputs) == [key]
        if signature == contract.PIXELS_SIGNATURE:
            assert inputs[key].dtype == tf.uint8
            assert inputs[key].shape.as_list() == [None, *contract.IMAGE_SHAPE]
        else:
            assert inputs[key].dtype == tf.string
            assert inputs[key].shape.as_list() == [None]
        outputs = function.structured_outputs
        assert set(outputs) == OUTPUTS
        probabilities = outputs[contract.PROBABILITIES_OUTPUT]
        assert probabilities.dtype == tf.float32
        assert probabilities.shape.as_list() == [None, contract.NUM_CLASSES]
        assert outputs[contract.CLASS_ID_OUTPUT].dtype == tf.int64
        assert outputs[contract.CLASS_NAME_OUTPUT].dtype == tf.string
        for name in (contract.CLASS_ID_OUTPUT, contract.CLASS_NAME_OUTPUT):
            assert outputs[name].shape.as_list() == [None]


def test_the_three_signatures_agree_on_the_same_images(direct, cifar_pixels):
    pngs = [encode(p) for p in cifar_pixels]
    by_pixels = call_direct(direct, contract.PIXELS_SIGNATURE, {"pixels": cifar_pixels})
    by_png = call_direct(direct, contract.SERVING_SIGNATURE, {"image_bytes": pngs})
    by_example = call_direct(direct, contract.EXAMPLES_SIGNATURE,
                             {"examples": [image_only_example(b) for b in pngs]})
    assert_outputs_close(by_png, by_pixels)
    assert_outputs_close(by_example, by_pixels)
    probabilities = by_pixels[contract.PROBABILITIES_OUTPUT]
    assert probabilities.shape == (IMAGE_COUNT, contract.NUM_CLASSES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert [n.decode() for n in by_pixels[contract.CLASS_NAME_OUTPUT]] == [
        contract.CLASS_NAMES[i] for i in by_pixels[contract.CLASS_ID_OUTPUT]]


# --------------------------------------------------------------------------------------------
# The client's exact payloads, converted the way TF Serving converts them
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("columnar", [False, True], ids=["row", "columnar"])
@pytest.mark.parametrize("signature", SIGNATURES)
def test_rest_payload_answered_like_the_direct_call(server, direct, cifar_pixels, signature,
                                                    columnar):
    images, inputs = client_inputs(signature, cifar_pixels)
    key = SIGNATURE_INPUTS[signature]
    payload = json.loads(json.dumps(build_rest_payload(images, signature, columnar=columnar)))
    assert payload["signature_name"] == signature
    values = payload["inputs"][key] if columnar else payload["instances"]
    assert len(values) == IMAGE_COUNT
    if signature != contract.PIXELS_SIGNATURE:
        assert all(set(v) == {"b64"} for v in values)

    specs = server.model.input_specs(signature)
    request, is_columnar = sts.rest_predict_request(payload, specs, "cifar10", signature)
    assert is_columnar == columnar
    assert list(request.inputs) == [key]
    assert_input_tensor(request.inputs[key], signature, inputs[key])

    body = json.loads(json.dumps(sts.rest_response_body(server.model.predict(request),
                                                        columnar)))
    if columnar:
        assert list(body) == ["outputs"] and set(body["outputs"]) == OUTPUTS
    else:
        assert list(body) == ["predictions"] and len(body["predictions"]) == IMAGE_COUNT
        assert all(set(row) == OUTPUTS for row in body["predictions"])
        # string outputs not named *_bytes come back as plain JSON strings
        assert all(row[contract.CLASS_NAME_OUTPUT] in contract.CLASS_NAMES
                   for row in body["predictions"])
    assert_predictions_close(parse_rest_response(body),
                             call_direct(direct, signature, inputs))


@pytest.mark.parametrize("signature", SIGNATURES)
def test_grpc_request_answered_like_the_direct_call(server, direct, cifar_pixels, signature):
    from tensorflow_serving.apis import predict_pb2

    images, inputs = client_inputs(signature, cifar_pixels)
    key = SIGNATURE_INPUTS[signature]
    built = build_grpc_request(images, "cifar10", signature, label="stable")
    request = predict_pb2.PredictRequest.FromString(built.SerializeToString())  # the wire
    assert request.model_spec.signature_name == signature
    assert list(request.inputs) == [key]
    assert_input_tensor(request.inputs[key], signature, inputs[key])

    response = predict_pb2.PredictResponse.FromString(
        server.model.predict(request).SerializeToString())
    outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
    want = call_direct(direct, signature, inputs)
    assert_outputs_close(outputs, want)
    assert outputs[contract.PROBABILITIES_OUTPUT].dtype == np.float32
    assert outputs[contract.CLASS_ID_OUTPUT].dtype == np.int64
    assert_predictions_close(parse_grpc_response(response), want)


# --------------------------------------------------------------------------------------------
# Warmup records
# --------------------------------------------------------------------------------------------
def test_warmup_records_parse_and_replay(server, direct, pushed_model_dir):
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(pushed_model_dir, WARMUP_FILE)
    assert os.path.isfile(path)
    records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
    assert 0 < len(records) <= TF_SERVING_MAX_WARMUP_RECORDS
    answers = {}
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        # As TF Serving replays it: the request's signature (empty means serving_default) and
        # its inputs, on the loaded version; the model name in the record is not looked at.
        signature = request.model_spec.signature_name or contract.SERVING_SIGNATURE
        assert signature in direct.signatures
        assert list(request.inputs) == [SIGNATURE_INPUTS[signature]]
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        (batch,) = {len(v) for v in inputs.values()}
        assert batch > 0
        response = server.model.predict(request)
        outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
        assert outputs[contract.PROBABILITIES_OUTPUT].shape == (batch, contract.NUM_CLASSES)
        assert_outputs_close(outputs, call_direct(direct, signature, inputs))
        answers[signature] = outputs
    assert set(SIGNATURES) == set(answers)
    # the pixels record holds the decoded images of the image_bytes record
    assert_outputs_close(answers[contract.PIXELS_SIGNATURE],
                         answers[contract.SERVING_SIGNATURE])
    assert_outputs_close(answers[contract.EXAMPLES_SIGNATURE],
                         answers[contract.SERVING_SIGNATURE])


# --------------------------------------------------------------------------------------------
# The client over real sockets, against the test server serving the pushed model
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport,columnar",
                         [("rest", False), ("rest", True), ("grpc", False)],
                         ids=["rest-row", "rest-columnar", "grpc"])
def test_client_end_to_end_matches_the_direct_call(server, direct, cifar_pixels, transport,
                                                   columnar):
    server.reset()
    images, image_inputs = client_inputs(contract.SERVING_SIGNATURE, cifar_pixels)
    examples, example_inputs = client_inputs(contract.EXAMPLES_SIGNATURE, cifar_pixels)
    target = {"rest_url": server.rest_url} if transport == "rest" \
        else {"grpc_target": server.grpc_target}
    with ServingClient(batch_size=3, columnar=columnar, timeout=60, **target) as client:
        by_images = client.predict_images(images)
        by_pixels = client.predict_pixels(cifar_pixels)
        by_examples = client.predict_examples(examples)

    assert_predictions_close(by_images,
                             call_direct(direct, contract.SERVING_SIGNATURE, image_inputs))
    assert_predictions_close(by_pixels,
                             call_direct(direct, contract.PIXELS_SIGNATURE,
                                         {"pixels": cifar_pixels}))
    assert_predictions_close(by_examples,
                             call_direct(direct, contract.EXAMPLES_SIGNATURE, example_inputs))
    for predictions in (by_images, by_pixels, by_examples):
        assert [p.source for p in predictions] == list(range(IMAGE_COUNT))
    got = [(r.transport, r.signature, r.batch_size, r.status) for r in server.requests]
    assert got == [(transport, signature, size, "OK") for signature in SIGNATURES
                   for size in (3, 3, 2)]


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_wrong_size_image_is_a_bad_request_for_the_real_model(server, cifar_pixels, transport):
    """The client refuses such images itself; sent anyway, the model's decode step refuses
    them with INVALID_ARGUMENT rather than answering garbage."""
    import grpc
    import requests
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    server.reset()
    tiny = encode(np.ascontiguousarray(cifar_pixels[0].reshape(16, 64, 3)))  # 1,024 pixels
    message = ("image_bytes[0]: the image is 16x64 (height x width); the model takes 32x32 PNG "
               "or JPEG images")
    if transport == "rest":
        response = requests.post(rest_predict_url(server.rest_url),
                                 json=build_rest_payload([tiny]), timeout=60)
        assert response.status_code == 400
        assert message in response.json()["error"]
    else:
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(build_grpc_request([tiny]), timeout=60)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in info.value.details()
    assert [r.status for r in server.requests] == [
        "400" if transport == "rest" else "INVALID_ARGUMENT"]


# --------------------------------------------------------------------------------------------
# Bad input to the pushed model (issue #16), fed as TF Serving feeds it: no shape check
# --------------------------------------------------------------------------------------------
def fed_unchecked(model, signature: str, value) -> dict:
    """The signature's graph function on `value`, without the Python-side shape check that
    TF Serving's Session::Run does not make either."""
    function = model.signatures[signature]
    outputs = function._call_flat([tf.constant(value)], function.captured_inputs)
    return {k: v.numpy() for k, v in outputs.items()}


def test_pushed_model_refuses_wrong_shape_pixels(direct, cifar_pixels):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"pixels: expected uint8 \[N, 32, 32, 3\], got shape \[8 16 64 3\]"):
        fed_unchecked(direct, contract.PIXELS_SIGNATURE, cifar_pixels.reshape(8, 16, 64, 3))


@pytest.mark.parametrize("signature", SIGNATURES)
def test_pushed_model_answers_an_empty_batch_with_empty_outputs(direct, signature):
    empty = np.zeros((0, *contract.IMAGE_SHAPE), np.uint8) \
        if signature == contract.PIXELS_SIGNATURE else np.zeros((0,), object)
    outputs = fed_unchecked(direct, signature, empty)
    assert outputs[contract.PROBABILITIES_OUTPUT].shape == (0, contract.NUM_CLASSES)
    assert outputs[contract.CLASS_ID_OUTPUT].shape == (0,)


def test_pushed_model_names_garbage_examples(server, cifar_pixels):
    examples = [image_only_example(encode(cifar_pixels[0])), b"\xff\xfe\x80garbage"]
    response = requests_post(server, contract.EXAMPLES_SIGNATURE, examples)
    assert response.status_code == 400
    assert "examples[1]: not a serialized tf.Example with one bytes feature image" in \
        response.json()["error"]


def requests_post(server, signature: str, values):
    import requests

    return requests.post(rest_predict_url(server.rest_url),
                         json=build_rest_payload(values, signature), timeout=60)
