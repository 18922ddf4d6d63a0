"""Test fixture: a small stand-in for TF Serving's predict APIs, on 127.0.0.1 only.

Not a product. `ServingTestServer` serves one SavedModel, loaded in-process, through
* the REST predict endpoint `POST /v1/models/<name>[/versions/N|/labels/L]:predict`
  (http.server), decoding JSON the way TF Serving does: `{"b64": ...}` objects become bytes,
  row `instances` and columnar `inputs` become batched TensorProtos of the signature's input
  dtype in a real `PredictRequest` (`rest_predict_request`), which then takes the gRPC path;
  the `PredictResponse` is answered as `predictions` (row) or `outputs` (columnar)
  (`rest_response_body`), with `{"error": ...}` bodies on failure;
* the gRPC `tensorflow.serving.PredictionService/Predict` method (grpc.server), converting
  TensorProtos with tf.make_ndarray / tf.make_tensor_proto (`_Model.predict`).

The pure conversion functions and `_Model.predict` can also be called in-process, e.g. to feed
the client's exact payloads to the real exported model (tests/test_serving_signatures.py).

It records every request (transport, model, version, label, signature, batch size, status),
can fail the next K requests as UNAVAILABLE (503) or INVALID_ARGUMENT (400) with a message,
and can delay every answer to provoke client timeouts.

`build_stand_in_model(path)` saves a tiny SavedModel with the same signatures as the real one.
"""
from __future__ import annotations

import base64
import json
import re
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from modules import contract


# --------------------------------------------------------------------------------------------
# Stand-in model
# --------------------------------------------------------------------------------------------
def build_stand_in_model(export_dir: str, seed: int = 0) -> str:
    """Saves a tiny SavedModel with the real model's three signatures; returns export_dir.

    It is one dense layer with fixed random weights over the decoded image, so different images
    get different (but meaningless) predictions.
    """
    import tensorflow as tf

    image_shape = list(contract.IMAGE_SHAPE)

    class StandIn(tf.Module):
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(seed)
            self.kernel = tf.Variable(
                rng.normal(0.0, 0.05, (contract.PIXELS_PER_IMAGE, contract.NUM_CLASSES))
                .astype(np.float32), name="kernel")
            self.bias = tf.Variable(
                rng.normal(0.0, 0.1, (contract.NUM_CLASSES,)).astype(np.float32), name="bias")

        def _outputs(self, pixels):
            x = tf.reshape(tf.cast(pixels, tf.float32) / 255.0, [-1, contract.PIXELS_PER_IMAGE])
            probabilities = tf.nn.softmax(tf.matmul(x, self.kernel) + self.bias)
            class_ids = tf.argmax(probabilities, axis=1, output_type=tf.int64)
            class_names = tf.gather(tf.constant(contract.CLASS_NAMES), class_ids)
            return {contract.PROBABILITIES_OUTPUT: probabilities,
                    contract.CLASS_ID_OUTPUT: class_ids,
                    contract.CLASS_NAME_OUTPUT: class_names}

        def _decode(self, image_bytes):
            def one(data):
                image = tf.io.decode_image(data, channels=3, expand_animations=False)
                return tf.ensure_shape(image, image_shape)

            return tf.map_fn(one, image_bytes,
                             fn_output_signature=tf.TensorSpec(image_shape, tf.uint8))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve_image_bytes(self, image_bytes):
            return self._outputs(self._decode(image_bytes))

        @tf.function(input_signature=[tf.TensorSpec([None] + image_shape, tf.uint8,
                                                    name="pixels")])
        def serve_pixels(self, pixels):
            return self._outputs(pixels)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve_examples(self, examples):
            features = tf.io.parse_example(
                examples, {contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})
            return self._outputs(self._decode(features[contract.IMAGE_KEY]))

    module = StandIn()
    tf.saved_model.save(module, export_dir, signatures={
        contract.SERVING_SIGNATURE: module.serve_image_bytes.get_concrete_function(),
        contract.PIXELS_SIGNATURE: module.serve_pixels.get_concrete_function(),
        contract.EXAMPLES_SIGNATURE: module.serve_examples.get_concrete_function(),
    })
    return export_dir


# --------------------------------------------------------------------------------------------
# Model runner shared by both transports
# --------------------------------------------------------------------------------------------
class RequestFailed(Exception):
    """An error the server reports to the client: HTTP status + gRPC code + message."""

    def __init__(self, http_status: int, grpc_code: str, message: str):
        super().__init__(message)
        self.http_status = http_status
        self.grpc_code = grpc_code
        self.message = message


def _bad_request(message: str) -> RequestFailed:
    return RequestFailed(400, "INVALID_ARGUMENT", message)


@dataclass
class RecordedRequest:
    transport: str  # "rest" or "grpc"
    model: str
    version: int | None
    label: str | None
    signature: str
    batch_size: int | None
    status: str = "OK"  # "OK", or the HTTP status / gRPC code name answered
    path: str | None = None  # REST URL path


class _Model:
    def __init__(self, saved_model_dir: str):
        import tensorflow as tf

        self._tf = tf
        self.loaded = tf.saved_model.load(saved_model_dir)
        self.signatures = dict(self.loaded.signatures)

    def input_specs(self, signature: str) -> dict:
        if signature not in self.signatures:
            raise _bad_request(f'Serving signature name: "{signature}" not found in signature def')
        return dict(self.signatures[signature].structured_input_signature[1])

    def run(self, signature: str, inputs: dict) -> dict:
        tf = self._tf
        specs = self.input_specs(signature)
        _check_input_keys(specs, inputs)
        tensors = {}
        for key, spec in specs.items():
            try:
                tensors[key] = tf.constant(inputs[key], dtype=spec.dtype)
            except (TypeError, ValueError) as exc:
                raise _bad_request(
                    f"input '{key}' does not convert to {spec.dtype.name}: {exc}") from exc
            if not spec.shape.is_compatible_with(tensors[key].shape):
                raise _bad_request(f"input '{key}' has shape {tensors[key].shape.as_list()}, "
                                   f"expected {spec.shape}")
        try:
            outputs = self.signatures[signature](**tensors)
        except tf.errors.InvalidArgumentError as exc:
            raise _bad_request(status_message(exc.message)) from None
        return {k: v.numpy() for k, v in outputs.items()}

    def predict(self, request, version: int = 1):
        """A `PredictResponse` for a `PredictRequest`, as TF Serving's Predict answers it.

        The signature is `model_spec.signature_name` (empty: serving_default); the inputs are
        the request's TensorProtos through tf.make_ndarray, the outputs go back through
        tf.make_tensor_proto.
        """
        from tensorflow_serving.apis import predict_pb2

        tf = self._tf
        signature = request.model_spec.signature_name or contract.SERVING_SIGNATURE
        try:
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        except (TypeError, ValueError) as exc:
            raise _bad_request(f"malformed input TensorProto: {exc}") from exc
        outputs = self.run(signature, inputs)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.signature_name = signature
        response.model_spec.version.value = version
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response


def status_message(message: str) -> str:
    """The line of a TensorFlow error that TF Serving reports first: the op's own message.

    Python adds "Graph execution error:" and a "Detected at node ..." traceback before it, and
    "{{function_node ...}}" in front of it; TF Serving's Session::Run has neither.
    """
    for line in message.splitlines():
        if not line.strip() or line[0].isspace() or line.startswith(
                ("Graph execution error", "Detected at node", "<stack traces unavailable>")):
            continue
        return re.sub(r"^(\{\{function_node [^}]*\}\}\s*)+", "", line).strip()
    return message.strip()


def _check_input_keys(specs: dict, inputs: dict) -> None:
    missing = sorted(set(specs) - set(inputs))
    extra = sorted(set(inputs) - set(specs))
    if missing or extra:
        raise _bad_request(f"input keys must be {sorted(specs)}; missing {missing}, "
                           f"unexpected {extra}")


# --------------------------------------------------------------------------------------------
# JSON conversion, TF Serving style
# --------------------------------------------------------------------------------------------
def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _decode_json_value(value, is_string: bool, key: str):
    if _is_b64(value):
        if not is_string:
            raise _bad_request(f"'b64' value given for input '{key}', which is not a string")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError) as exc:
            raise _bad_request(f"bad base64 in input '{key}': {exc}") from exc
    if isinstance(value, list):
        return [_decode_json_value(v, is_string, key) for v in value]
    if isinstance(value, dict):
        raise _bad_request(f"unexpected JSON object in input '{key}'")
    if is_string and isinstance(value, str):
        return value.encode("utf-8")
    return value


def rest_inputs(body: dict, specs: dict) -> tuple:
    """(inputs, columnar) from a REST predict body, as TF Serving reads it."""
    if not isinstance(body, dict):
        raise _bad_request("JSON Value must be an object")
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows == has_cols:
        raise _bad_request("Missing 'inputs' or 'instances' key" if not has_rows
                           else "Not both 'inputs' and 'instances' may be given")
    is_string = {k: s.dtype.name == "string" for k, s in specs.items()}
    if has_rows:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise _bad_request("'instances' must be a non-empty JSON list")
        named = all(isinstance(r, dict) and not _is_b64(r) for r in rows)
        if named:
            keys = set(rows[0])
            if any(set(r) != keys for r in rows):
                raise _bad_request("all instances must have the same named inputs")
            return {k: [_decode_json_value(r[k], is_string.get(k, False), k) for r in rows]
                    for k in keys}, False
        if len(specs) != 1:
            raise _bad_request("instances must be named objects for multi-input signatures")
        (key,) = specs
        return {key: [_decode_json_value(r, is_string[key], key) for r in rows]}, False
    cols = body["inputs"]
    if isinstance(cols, dict) and not _is_b64(cols):
        return {k: _decode_json_value(v, is_string.get(k, False), k) for k, v in cols.items()}, True
    if len(specs) != 1:
        raise _bad_request("'inputs' must be a named object for multi-input signatures")
    (key,) = specs
    return {key: _decode_json_value(cols, is_string[key], key)}, True


def _to_json(value, key: str):
    if isinstance(value, np.ndarray):
        return [_to_json(v, key) for v in value] if value.ndim else _to_json(value.item(), key)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        if key.endswith("_bytes"):
            return {"b64": base64.b64encode(value).decode("ascii")}
        return value.decode("utf-8", "replace")
    return value


def rest_outputs(outputs: dict, columnar: bool) -> dict:
    """The body TF Serving answers: `predictions` for row requests, `outputs` for columnar."""
    if columnar:
        cols = {k: _to_json(v, k) for k, v in outputs.items()}
        return {"outputs": next(iter(cols.values())) if len(cols) == 1 else cols}
    n = len(next(iter(outputs.values())))
    if len(outputs) == 1:
        ((key, value),) = outputs.items()
        return {"predictions": [_to_json(value[i], key) for i in range(n)]}
    return {"predictions": [{k: _to_json(v[i], k) for k, v in outputs.items()}
                            for i in range(n)]}


def rest_predict_request(body: dict, specs: dict, model_name: str = "cifar10",
                         signature: str = contract.SERVING_SIGNATURE) -> tuple:
    """(PredictRequest, columnar) from a REST predict body, as TF Serving builds it.

    Each input becomes a TensorProto of the dtype its signature declares (`specs`: input name
    -> tf.TensorSpec), so JSON numbers become uint8 for `pixels` and `{"b64": ...}` values
    become the raw bytes of a DT_STRING tensor.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    inputs, columnar = rest_inputs(body, specs)
    _check_input_keys(specs, inputs)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    for key, values in inputs.items():
        dtype = specs[key].dtype
        try:
            if dtype.is_integer:  # numpy would wrap 300 into a uint8 quietly; TF Serving refuses
                arr = np.asarray(values)
                if arr.size and (arr.dtype.kind not in "iu" or arr.min() < dtype.min
                                 or arr.max() > dtype.max):
                    raise ValueError(f"expected integers in [{dtype.min}, {dtype.max}]")
            proto = tf.make_tensor_proto(values, dtype=dtype)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _bad_request(f"input '{key}' does not convert to {dtype.name}: {exc}") from exc
        request.inputs[key].CopyFrom(proto)
    return request, columnar


def rest_response_body(response, columnar: bool) -> dict:
    """The JSON body TF Serving answers for a `PredictResponse` (see `rest_outputs`)."""
    import tensorflow as tf

    return rest_outputs({k: tf.make_ndarray(v) for k, v in response.outputs.items()}, columnar)


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------
_PREDICT_PATH = re.compile(
    r"^/v1/models/(?P<model>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?:predict$")


class ServingTestServer:
    """REST and gRPC predict endpoints for one SavedModel, on free 127.0.0.1 ports."""

    def __init__(self, saved_model_dir: str, model_name: str = "cifar10"):
        self.model_name = model_name
        self.model = _Model(saved_model_dir)
        self.requests: list = []
        self.delay_s = 0.0
        self._failures: list = []
        self._lock = threading.Lock()
        self._http = None
        self._grpc = None
        self.rest_url = ""
        self.grpc_target = ""

    # -- control -----------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            self.delay_s = 0.0

    def fail_next(self, count: int, kind: str = "unavailable",
                  message: str = "fake outage") -> None:
        """The next `count` predict requests fail: kind "unavailable" (503 / UNAVAILABLE) or
        "bad_request" (400 / INVALID_ARGUMENT), with `message` as the error text."""
        status = {"unavailable": (503, "UNAVAILABLE"),
                  "bad_request": (400, "INVALID_ARGUMENT")}[kind]
        with self._lock:
            self._failures.extend(RequestFailed(*status, message) for _ in range(count))

    @property
    def batch_sizes(self) -> list:
        return [r.batch_size for r in self.requests]

    # -- request handling shared by both transports ------------------------------------------
    def _handle(self, record: RecordedRequest, compute):
        """Records the request, applies the delay and injected failures, then runs `compute`."""
        with self._lock:
            self.requests.append(record)
            failure = self._failures.pop(0) if self._failures else None
        if self.delay_s:
            time.sleep(self.delay_s)
        try:
            if failure is not None:
                raise failure
            if record.model != self.model_name:
                raise RequestFailed(404, "NOT_FOUND",
                                    f"Servable not found for request: Latest({record.model})")
            return compute()
        except RequestFailed as exc:
            record.status = str(exc.http_status if record.transport == "rest" else exc.grpc_code)
            raise

    def _rest_predict(self, path: str, raw: bytes) -> tuple:
        match = _PREDICT_PATH.match(path)
        if not match:
            return 404, {"error": f"Malformed request: POST {path}"}
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            return 400, {"error": f"JSON Parse error: {exc}"}
        signature = (body.get("signature_name") if isinstance(body, dict) else None) \
            or contract.SERVING_SIGNATURE
        batch = body.get("instances", body.get("inputs")) if isinstance(body, dict) else None
        if isinstance(batch, dict) and len(batch) == 1:
            batch = next(iter(batch.values()))
        record = RecordedRequest(
            transport="rest", model=match["model"],
            version=int(match["version"]) if match["version"] else None, label=match["label"],
            signature=signature, batch_size=len(batch) if isinstance(batch, list) else None,
            path=path)

        def compute():
            specs = self.model.input_specs(signature)
            request, columnar = rest_predict_request(body, specs, record.model, signature)
            return rest_response_body(self.model.predict(request, record.version or 1),
                                      columnar)

        try:
            return 200, self._handle(record, compute)
        except RequestFailed as exc:
            return exc.http_status, {"error": exc.message}

    def _grpc_predict(self, request, context):
        import grpc

        spec = request.model_spec
        signature = spec.signature_name or contract.SERVING_SIGNATURE
        sizes = [v.tensor_shape.dim[0].size for v in request.inputs.values()
                 if v.tensor_shape.dim]
        record = RecordedRequest(
            transport="grpc", model=spec.name,
            version=spec.version.value if spec.HasField("version") else None,
            label=spec.version_label or None, signature=signature,
            batch_size=sizes[0] if sizes else None)

        def compute():
            return self.model.predict(request, record.version or 1)

        try:
            return self._handle(record, compute)
        except RequestFailed as exc:
            context.abort(getattr(grpc.StatusCode, exc.grpc_code), exc.message)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> ServingTestServer:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server naming
                length = int(self.headers.get("Content-Length") or 0)
                status, body = owner._rest_predict(self.path, self.rfile.read(length))
                data = json.dumps(body).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        class HTTPServer(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

        self._http = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._http.serve_forever, daemon=True,
                         name="serving-test-rest").start()
        self.rest_url = f"http://127.0.0.1:{self._http.server_address[1]}"

        class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(self, request, context):  # noqa: N802 - gRPC naming
                return owner._grpc_predict(request, context)

        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(),
                                                                           self._grpc)
        port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        self.grpc_target = f"127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._grpc is not None:
            self._grpc.stop(grace=0)
            self._grpc = None

    def __enter__(self) -> ServingTestServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
