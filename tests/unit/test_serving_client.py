"""Tests of serving.client and `cifar10-tfx predict` (cli.serving); configs: test_serving_configs.

Everything talks over real sockets on 127.0.0.1 to `serving_test_server.ServingTestServer`,
which serves a SavedModel in-process: by default a tiny stand-in with the real model's
signatures, or the real exported model when $CIFAR10_SAVED_MODEL points at a SavedModel
folder (one version folder, e.g. <serving_dir>/1732270000).

The last tests run against a real TF Serving when $TFSERVING_URL (REST base URL) and/or
$TFSERVING_GRPC (host:port) are set ($TFSERVING_MODEL: model name, default cifar10).
"""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli import main as cli
from modules import contract
from serving.client import (
    ImageError,
    InputError,
    Prediction,
    ServerError,
    ServingClient,
    ServingTimeoutError,
    ServingUnavailableError,
    build_grpc_request,
    build_rest_payload,
    parse_grpc_response,
    parse_rest_response,
    rest_predict_url,
)
from tests.support import serving_test_server as sts

REPO = Path(__file__).resolve().parents[2]
SERVING_DIR = REPO / "serving"
TRANSPORTS = ("rest", "grpc")


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------
def encode(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def random_pixels(n: int, seed: int = 0, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def random_pngs(n: int, seed: int = 0) -> list:
    return [encode(p) for p in random_pixels(n, seed)]


@pytest.fixture(scope="session")
def saved_model_dir(tmp_path_factory) -> str:
    real = os.environ.get("CIFAR10_SAVED_MODEL")
    if real:
        return real
    return sts.build_stand_in_model(str(tmp_path_factory.mktemp("stand_in") / "1"))


@pytest.fixture(scope="session")
def in_process(saved_model_dir):
    """The same SavedModel loaded separately, to compute expected results."""
    import tensorflow as tf

    return tf.saved_model.load(saved_model_dir).signatures


@pytest.fixture(scope="module")
def _server(saved_model_dir):
    with sts.ServingTestServer(saved_model_dir) as server:
        yield server


@pytest.fixture
def server(_server):
    _server.reset()
    yield _server
    _server.reset()


def make_client(server, transport: str, **kwargs) -> ServingClient:
    kwargs.setdefault("backoff", 0.01)
    if transport == "rest":
        return ServingClient(rest_url=server.rest_url, **kwargs)
    return ServingClient(grpc_target=server.grpc_target, **kwargs)


def expected(in_process, signature: str, **inputs) -> dict:
    import tensorflow as tf

    outputs = in_process[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


def assert_matches(predictions, want: dict) -> None:
    probs = want[contract.PROBABILITIES_OUTPUT]
    assert len(predictions) == len(probs)
    np.testing.assert_allclose([p.probabilities for p in predictions], probs, rtol=1e-6,
                               atol=1e-7)
    assert [p.class_id for p in predictions] == want[contract.CLASS_ID_OUTPUT].tolist()
    assert [p.class_name for p in predictions] == [
        n.decode() for n in want[contract.CLASS_NAME_OUTPUT]]
    for p in predictions:
        assert len(p.probabilities) == contract.NUM_CLASSES
        assert p.class_name == contract.CLASS_NAMES[p.class_id]


@pytest.fixture
def image_dir(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    pixels = random_pixels(3, seed=5)
    (folder / "a.png").write_bytes(encode(pixels[0]))
    (folder / "b.jpg").write_bytes(encode(pixels[1], "JPEG"))
    (folder / "c.jpeg").write_bytes(encode(pixels[2], "JPEG"))
    (folder / "notes.txt").write_text("not an image, and not picked up from a folder")
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Predictions equal the in-process model
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport,columnar",
                         [("rest", False), ("rest", True), ("grpc", False)])
def test_image_bytes_match_in_process(server, in_process, transport, columnar):
    images = random_pngs(5, seed=1)
    with make_client(server, transport, columnar=columnar) as client:
        predictions = client.predict_images(images)
    assert_matches(predictions, expected(in_process, contract.SERVING_SIGNATURE,
                                         image_bytes=images))
    assert [p.source for p in predictions] == list(range(5))
    assert server.requests[0].signature == contract.SERVING_SIGNATURE


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pixels_match_in_process(server, in_process, transport):
    pixels = random_pixels(4, seed=2)
    with make_client(server, transport) as client:
        predictions = client.predict_pixels(pixels)
    assert_matches(predictions, expected(in_process, contract.PIXELS_SIGNATURE, pixels=pixels))
    assert server.requests[0].signature == contract.PIXELS_SIGNATURE


def test_pixels_signature_decodes_images_client_side(server, in_process):
    pixels = random_pixels(3, seed=3)
    with make_client(server, "rest", signature=contract.PIXELS_SIGNATURE) as client:
        predictions = client.predict_images([encode(p) for p in pixels])
    assert_matches(predictions, expected(in_process, contract.PIXELS_SIGNATURE, pixels=pixels))
    assert server.requests[0].signature == contract.PIXELS_SIGNATURE


def test_examples_signature(server, in_process):
    import tensorflow as tf

    def example(png: bytes) -> bytes:
        def b(v):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

        def i(v):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

        return tf.train.Example(features=tf.train.Features(feature={
            contract.IMAGE_KEY: b(png), contract.HEIGHT_KEY: i(32),
            contract.WIDTH_KEY: i(32), contract.CHANNELS_KEY: i(3),
        })).SerializeToString()

    examples = [example(png) for png in random_pngs(3, seed=4)]
    with make_client(server, "grpc") as client:
        predictions = client.predict_examples(examples)
    assert_matches(predictions, expected(in_process, contract.EXAMPLES_SIGNATURE,
                                         examples=examples))


def test_predict_paths_folder_and_files(server, image_dir, in_process):
    with make_client(server, "rest") as client:
        predictions = client.predict_paths([image_dir, image_dir / "a.png"])
    names = [Path(p.source).name for p in predictions]
    assert names == ["a.png", "b.jpg", "c.jpeg", "a.png"]
    # JPEG bytes are sent as they are: the server decodes them, so results match exactly.
    images = [Path(p.source).read_bytes() for p in predictions]
    assert_matches(predictions, expected(in_process, contract.SERVING_SIGNATURE,
                                         image_bytes=images))


# --------------------------------------------------------------------------------------------
# Batching, retries, errors, timeouts
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_batching_splits_150_into_64_64_22(server, transport):
    images = random_pngs(150, seed=6)
    with make_client(server, transport) as client:
        predictions = client.predict_images(images)
    assert server.batch_sizes == [64, 64, 22]
    assert [p.source for p in predictions] == list(range(150))


@pytest.mark.parametrize("transport,failed_status",
                         [("rest", "503"), ("grpc", "UNAVAILABLE")])
def test_retries_succeed_after_two_unavailable(server, transport, failed_status):
    server.fail_next(2, "unavailable")
    with make_client(server, transport, retries=3) as client:
        predictions = client.predict_images(random_pngs(2))
    assert len(predictions) == 2
    assert [r.status for r in server.requests] == [failed_status, failed_status, "OK"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_gives_up_after_retries(server, transport):
    server.fail_next(10, "unavailable", message="overloaded right now")
    with make_client(server, transport, retries=2) as client:
        with pytest.raises(ServingUnavailableError, match="3 attempts.*overloaded right now"):
            client.predict_images(random_pngs(1))
    assert len(server.requests) == 3


@pytest.mark.parametrize("transport,status", [("rest", 400), ("grpc", "INVALID_ARGUMENT")])
def test_no_retry_on_bad_request(server, transport, status):
    server.fail_next(1, "bad_request", message="Input to reshape is a tensor with 7 values")
    with make_client(server, transport, retries=3) as client:
        with pytest.raises(ServerError) as info:
            client.predict_images(random_pngs(1))
    assert info.value.status == status
    assert "Input to reshape is a tensor with 7 values" in str(info.value)
    assert len(server.requests) == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_server_errors_for_unknown_signature_and_model(server, transport):
    with make_client(server, transport, signature="no_such_signature") as client:
        with pytest.raises(ServerError, match='"no_such_signature" not found'):
            client.predict_images(random_pngs(1))
    with make_client(server, transport, model_name="mnist") as client:
        with pytest.raises(ServerError, match="Servable not found") as info:
            client.predict_images(random_pngs(1))
    assert info.value.status == (404 if transport == "rest" else "NOT_FOUND")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_timeout_raises_clear_error(server, transport):
    server.delay_s = 0.6
    with make_client(server, transport, timeout=0.15, retries=1) as client:
        with pytest.raises(ServingTimeoutError, match=r"timed out after 0\.15s \(2 attempts\)"):
            client.predict_images(random_pngs(1))
    assert len(server.requests) == 2


def test_connection_refused_is_unavailable():
    client = ServingClient(rest_url=f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01,
                           timeout=2)
    with pytest.raises(ServingUnavailableError, match="cannot connect"):
        client.predict_images(random_pngs(1))


def test_corrupt_image_is_named_and_the_rest_answered(server, tmp_path, caplog):
    good = tmp_path / "good.png"
    good.write_bytes(random_pngs(1)[0])
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(random_pngs(1, seed=9)[0][:60])
    with make_client(server, "rest") as client:
        for bad in (corrupt, truncated):
            caplog.clear()
            predictions = client.predict_paths([good, bad])
            assert [p.source for p in predictions] == [str(good)]
            (skipped,) = predictions.skipped
            assert skipped.path == str(bad)
            assert str(skipped).startswith(f"{bad}: ")
            assert [r.getMessage() for r in caplog.records] == [f"skipped {skipped}"]
            # alone, the file's own error: nothing is sent
            server.reset()
            with pytest.raises(ImageError, match=str(bad)) as info:
                client.predict_paths([bad])
            assert info.value.source == str(bad)
            assert server.requests == []
        with pytest.raises(InputError, match=f"no image could be sent: {corrupt}: .*; "
                                             f"{truncated}: "):
            client.predict_paths([corrupt, truncated])
        with pytest.raises(ImageError, match="missing.png: no such file"):
            client.predict_paths([tmp_path / "missing.png"])
    assert server.requests == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_small_image_refused_unless_resize(server, tmp_path, transport):
    small = tmp_path / "small.png"
    small.write_bytes(encode(random_pixels(1, size=10)[0]))
    with make_client(server, transport) as client:
        with pytest.raises(ImageError, match=rf"{small}: expected a 32x32 RGB .* got a 10x10"):
            client.predict_paths([small])
        assert server.requests == []
        (prediction,) = client.predict_paths([small], resize=True)
    assert prediction.source == str(small)
    assert len(prediction.probabilities) == 10


def test_resize_also_converts_mode_and_format(server):
    gray = io.BytesIO()
    Image.new("L", (64, 48), 128).save(gray, format="BMP")
    with make_client(server, "rest") as client:
        with pytest.raises(ImageError, match="image #0: .* 64x48 L BMP"):
            client.predict_images([gray.getvalue()])
        assert len(client.predict_images([gray.getvalue()], resize=True)) == 1


def test_bad_pixels_and_arguments():
    client = ServingClient(rest_url="http://127.0.0.1:1")
    with pytest.raises(InputError, match="uint8"):
        client.predict_pixels(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(InputError, match=r"\[N, 32, 32, 3\], got \[2, 28, 28, 3\]"):
        client.predict_pixels(np.zeros((2, 28, 28, 3), np.uint8))
    with pytest.raises(ValueError, match="exactly one"):
        ServingClient()
    with pytest.raises(ValueError, match="exactly one"):
        ServingClient(rest_url="http://x", grpc_target="x:1")
    with pytest.raises(ValueError, match="version or a label"):
        ServingClient(rest_url="http://x", version=1, label="stable")


# --------------------------------------------------------------------------------------------
# Version and label routing
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_version_and_label_routing(server, transport):
    with make_client(server, transport, version=1732270000) as client:
        client.predict_images(random_pngs(1))
    with make_client(server, transport, label="canary") as client:
        client.predict_images(random_pngs(1))
    with make_client(server, transport) as client:
        client.predict_images(random_pngs(1))
    got = [(r.version, r.label) for r in server.requests]
    assert got == [(1732270000, None), (None, "canary"), (None, None)]
    if transport == "rest":
        assert [r.path for r in server.requests] == [
            "/v1/models/cifar10/versions/1732270000:predict",
            "/v1/models/cifar10/labels/canary:predict",
            "/v1/models/cifar10:predict",
        ]


def test_rest_predict_url():
    assert rest_predict_url("http://h:8501/") == "http://h:8501/v1/models/cifar10:predict"
    assert rest_predict_url("h:8501", "m", version=3) == \
        "http://h:8501/v1/models/m/versions/3:predict"
    assert rest_predict_url("https://h", label="stable") == \
        "https://h/v1/models/cifar10/labels/stable:predict"
    with pytest.raises(ValueError):
        rest_predict_url("http://h", version=1, label="stable")


# --------------------------------------------------------------------------------------------
# Pure payload helpers
# --------------------------------------------------------------------------------------------
def test_build_rest_payload_row_and_columnar():
    images = [b"\x89PNG-one", b"two"]
    assert build_rest_payload(images, "serving_default") == {
        "signature_name": "serving_default",
        "instances": [{"b64": "iVBORy1vbmU="}, {"b64": "dHdv"}],
    }
    assert build_rest_payload(images, "serving_default", columnar=True) == {
        "signature_name": "serving_default",
        "inputs": {"image_bytes": [{"b64": "iVBORy1vbmU="}, {"b64": "dHdv"}]},
    }
    pixels = np.arange(2 * 32 * 32 * 3, dtype=np.int64).reshape(2, 32, 32, 3).astype(np.uint8)
    payload = build_rest_payload(pixels, "serving_pixels", columnar=True)
    assert np.array_equal(np.array(payload["inputs"]["pixels"], np.uint8), pixels)
    assert json.loads(json.dumps(payload)) == payload


def test_build_grpc_request_fields():
    import tensorflow as tf

    request = build_grpc_request([b"a", b"bc"], "cifar10", "serving_default", version=7)
    assert request.model_spec.name == "cifar10"
    assert request.model_spec.signature_name == "serving_default"
    assert request.model_spec.version.value == 7
    assert tf.make_ndarray(request.inputs["image_bytes"]).tolist() == [b"a", b"bc"]
    request = build_grpc_request(random_pixels(2), signature="serving_pixels", label="stable")
    assert request.model_spec.version_label == "stable"
    assert not request.model_spec.HasField("version")
    assert tf.make_ndarray(request.inputs["pixels"]).shape == (2, 32, 32, 3)


def test_parse_rest_response_formats():
    probs = np.full((2, 10), 0.1)
    probs[0, 3], probs[0, 0] = 0.2, 0.0
    row = {"predictions": [
        {"probabilities": probs[0].tolist(), "class_ids": 3, "class_names": "cat"},
        {"probabilities": probs[1].tolist(), "class_ids": 0,
         "class_names": {"b64": "YWlycGxhbmU="}},  # "airplane"
    ]}
    columnar = {"outputs": {"probabilities": probs.tolist(), "class_ids": [3, 0],
                            "class_names": ["cat", "airplane"]}}
    values_only = {"predictions": probs.tolist()}  # a model with only `probabilities`
    for body in (row, columnar, values_only):
        got = parse_rest_response(body, sources=["x.png", "y.png"])
        assert [(p.class_id, p.class_name, p.source) for p in got] == [
            (3, "cat", "x.png"), (0, "airplane", "y.png")]
        assert got[0].confidence == pytest.approx(0.2)


def test_parse_grpc_response():
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    probs = np.eye(10, dtype=np.float32)[[9, 2]]
    response.outputs["probabilities"].CopyFrom(tf.make_tensor_proto(probs))
    response.outputs["class_ids"].CopyFrom(tf.make_tensor_proto(np.array([9, 2], np.int64)))
    response.outputs["class_names"].CopyFrom(tf.make_tensor_proto([b"truck", b"bird"]))
    got = parse_grpc_response(response)
    assert got == [Prediction(9, "truck", probs[0].tolist(), 0),
                   Prediction(2, "bird", probs[1].tolist(), 1)]


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cli_table(server, image_dir, capsys, transport):
    where = ["--rest", server.rest_url] if transport == "rest" else ["--grpc", server.grpc_target]
    assert cli.main(["predict", str(image_dir), *where, "--label", "stable"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["path", "class", "confidence"]
    assert [Path(line.split()[0]).name for line in lines[1:]] == ["a.png", "b.jpg", "c.jpeg"]
    for line in lines[1:]:
        _, name, confidence = line.split()
        assert name in contract.CLASS_NAMES
        assert 0.1 <= float(confidence) <= 1.0  # the top class of 10 has at least 1/10
    assert [r.label for r in server.requests] == ["stable"]


def test_cli_json(server, image_dir, capsys):
    code = cli.main(["predict", str(image_dir / "a.png"), str(image_dir / "b.jpg"),
                     "--rest", server.rest_url, "--format", "json", "--version", "5",
                     "--batch-size", "1", "--columnar"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [Path(r["source"]).name for r in rows] == ["a.png", "b.jpg"]
    for r in rows:
        assert set(r) == {"source", "class_id", "class_name", "confidence", "probabilities"}
        assert r["class_name"] == contract.CLASS_NAMES[r["class_id"]]
        assert sum(r["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    assert server.batch_sizes == [1, 1]
    assert {r.path for r in server.requests} == {"/v1/models/cifar10/versions/5:predict"}


def test_cli_errors_exit_1_without_traceback(server, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    assert cli.main(["predict", str(bad), "--rest", server.rest_url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(bad) in err and "Traceback" not in err

    server.fail_next(1, "bad_request", message="bad things")
    ok = tmp_path / "ok.png"
    ok.write_bytes(random_pngs(1)[0])
    assert cli.main(["predict", str(ok), "--rest", server.rest_url]) == 1
    assert "HTTP 400" in capsys.readouterr().err

    # argparse usage errors: status 2, as argparse does
    assert cli.main(["predict", str(ok), "--version", "1", "--label", "x"]) == 2


def test_python_m_serving_cli(tmp_path):
    bad = tmp_path / "tiny.png"
    bad.write_bytes(encode(random_pixels(1, size=10)[0]))
    proc = subprocess.run([sys.executable, "-m", "cli", "predict", str(bad),
                           "--rest", f"http://127.0.0.1:{free_port()}"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "tiny.png" in proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------------
# Against a real TF Serving (opt-in)
# --------------------------------------------------------------------------------------------
REAL_TARGETS = {"rest": os.environ.get("TFSERVING_URL"), "grpc": os.environ.get("TFSERVING_GRPC")}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_real_tf_serving(transport):
    target = REAL_TARGETS[transport]
    if not target:
        env = "TFSERVING_URL (e.g. http://localhost:8501)" if transport == "rest" \
            else "TFSERVING_GRPC (e.g. localhost:8500)"
        pytest.skip(f"no real TF Serving: set {env} to run this test against one")
    kwargs = {"rest_url": target} if transport == "rest" else {"grpc_target": target}
    client = ServingClient(model_name=os.environ.get("TFSERVING_MODEL", "cifar10"), timeout=30,
                           **kwargs)
    with client:
        predictions = client.predict_images(random_pngs(2, seed=11))
        predictions += client.predict_pixels(random_pixels(1, seed=12))
    assert len(predictions) == 3
    for p in predictions:
        assert len(p.probabilities) == contract.NUM_CLASSES
        assert sum(p.probabilities) == pytest.approx(1.0, abs=1e-4)
        assert p.class_name == contract.CLASS_NAMES[p.class_id]
