"""Client for the CIFAR-10 model behind TF Serving, over REST or gRPC.

The model (see `modules.contract`) has three signatures that all return `probabilities`
float32 [N, 10], `class_ids` int64 [N] and `class_names` string [N]:

* `serving_default`  -- `image_bytes`: string [N], PNG or JPEG bytes of 32x32 RGB images
  (the model refuses other sizes itself, with INVALID_ARGUMENT naming the image)
* `serving_pixels`   -- `pixels`: uint8 [N, 32, 32, 3]
* `serving_examples` -- `examples`: string [N], serialized tf.Example

`ServingClient` checks images with Pillow before anything is sent, splits the work into
batches of `batch_size`, retries transient failures with exponential backoff and turns every
failure into a `ServingError` with a message a person can act on.

The payload helpers (`build_rest_payload`, `build_grpc_request`, `parse_rest_response`,
`parse_grpc_response`, `rest_predict_url`) are pure functions, so tests can feed the exact
same requests to an in-process model.

Only the gRPC path imports TensorFlow (lazily); REST needs just numpy, requests and Pillow.
"""
from __future__ import annotations

import base64
import io
import logging
import os
import random
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modules import contract, urls

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
ACCEPTED_FORMATS = ("PNG", "JPEG")  # sent as they are: what the model decodes
CONVERTED_FORMATS = ("WEBP",)  # read by Pillow and re-encoded as PNG (losslessly) before sending
#: Largest image `resize=True` decodes: a small file can declare billions of pixels.
MAX_DECODED_PIXELS = 40_000_000
#: Largest file read: a 32x32 image is a few KiB, a large photo to resize a few MiB.
MAX_FILE_BYTES = 64 << 20

#: Input tensor name of each known signature.
SIGNATURE_INPUTS = contract.SIGNATURE_INPUTS

#: HTTP statuses worth retrying: the server (or a proxy in front of it) is temporarily unable.
RETRYABLE_HTTP_STATUSES = frozenset({502, 503, 504})
#: gRPC status code names worth retrying.
RETRYABLE_GRPC_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})

Source = str | int | None
Images = Sequence[bytes] | np.ndarray


# --------------------------------------------------------------------------------------------
# Errors and results
# --------------------------------------------------------------------------------------------
class ServingError(Exception):
    """Base class of every error this module raises on purpose."""


class InputError(ServingError, ValueError):
    """The caller's input cannot be sent (wrong array shape or dtype, empty folder, ...)."""


class ImageError(InputError):
    """An image is unreadable or not a 32x32 RGB PNG/JPEG; `source` names the file or index."""

    def __init__(self, source: Source, reason: str):
        self.source = source
        self.reason = reason
        where = f"image #{source}" if isinstance(source, int) else str(source)
        super().__init__(f"{where}: {reason}")


class ServerError(ServingError):
    """The server answered with an error; `status` is the HTTP status or gRPC code name."""

    def __init__(self, status: int | str, message: str, url: str = ""):
        self.status = status
        self.message = message
        self.url = url
        where = f" from {url}" if url else ""
        kind = f"HTTP {status}" if isinstance(status, int) else f"gRPC {status}"
        super().__init__(f"server error {kind}{where}: {message}")


class ServingUnavailableError(ServingError):
    """The server could not be reached, or stayed unavailable for every retry."""


class ServingTimeoutError(ServingError):
    """A request took longer than the client's timeout, for every retry."""


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one image."""

    class_id: int
    class_name: str
    probabilities: list = field(repr=False)
    source: Source = None

    @property
    def confidence(self) -> float:
        """Probability of the predicted class."""
        return float(self.probabilities[self.class_id])

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "class_id": self.class_id,
            "class_name": self.class_name,
            "confidence": self.confidence,
            "probabilities": list(self.probabilities),
        }


# --------------------------------------------------------------------------------------------
# Image checks
# --------------------------------------------------------------------------------------------
def check_image(data: bytes, source: Source = None, resize: bool = False) -> bytes:
    """Returns image bytes that the model accepts, or raises `ImageError` naming `source`.

    A 32x32 RGB PNG or JPEG comes back unchanged; a 32x32 RGB WebP comes back as PNG. With
    `resize=True`, any image Pillow can read (other size, mode or format) is converted to RGB,
    resized to 32x32 and re-encoded as PNG. The size an image declares is checked before it is
    decoded, so a decompression bomb is refused without allocating its pixels.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, bytes | bytearray):
        raise ImageError(source, f"expected encoded image bytes, got {type(data).__name__}")
    if not data:
        raise ImageError(source, "file is empty")
    expected = f"a {contract.IMAGE_WIDTH}x{contract.IMAGE_HEIGHT} RGB PNG, JPEG or WebP"
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89M declared pixels: the size checks below refuse far less.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        with img:
            fmt, mode, size = img.format, img.mode, img.size
            right_size = size == (contract.IMAGE_WIDTH, contract.IMAGE_HEIGHT)
            if not right_size and not resize:  # refused from the header: nothing decoded
                raise ImageError(
                    source, f"expected {expected}, got a {size[0]}x{size[1]} {mode} {fmt}; use "
                    "resize=True (--resize) to convert it")
            if size[0] * size[1] > MAX_DECODED_PIXELS:
                raise ImageError(
                    source, f"declares {size[0]}x{size[1]} pixels, more than the "
                    f"{MAX_DECODED_PIXELS:,} this client decodes (a decompression bomb?)")
            img.load()  # decode fully: catches truncated files, not only bad headers
            if right_size and mode == "RGB" and fmt in ACCEPTED_FORMATS:
                return bytes(data)
            if right_size and mode == "RGB" and fmt in CONVERTED_FORMATS:
                return _png(img)
            if not resize:
                raise ImageError(
                    source, f"expected {expected}, got a {size[0]}x{size[1]} {mode} {fmt}; use "
                    "resize=True (--resize) to convert it")
            return _png(_eight_bit_rgb(img, source).resize(
                (contract.IMAGE_WIDTH, contract.IMAGE_HEIGHT), Image.BILINEAR))
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(source, f"refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError(source, "not an image Pillow can read (corrupt, or not an image)") \
            from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(source, f"image cannot be decoded ({exc})") from None


def _eight_bit_rgb(img, source: Source):
    """`img` as 8-bit RGB. Pillow's convert("RGB") clips 16-bit gray (PNG's I;16, or I) at 255,
    so every pixel above 1/256 of the range went white: those are scaled to 8 bits first."""
    from PIL import Image

    if img.mode == "F":
        raise ImageError(source, "has floating-point pixels (mode F), whose range is unknown; "
                                 "save it as an 8-bit or 16-bit image")
    if img.mode.startswith("I"):  # I;16, I;16B, I;16L, I: 16 bits of gray in Pillow's readers
        wide = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
        img = Image.fromarray(((wide + 128) // 257).astype(np.uint8), mode="L")
    return img.convert("RGB")


def _png(img) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def check_pixels(pixels: Any) -> np.ndarray:
    """Returns `pixels` as uint8 [N, 32, 32, 3] (a single [32, 32, 3] image is expanded)."""
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8:
        raise InputError(f"pixels must be uint8, got {arr.dtype}")
    if arr.shape == contract.IMAGE_SHAPE:
        arr = arr[np.newaxis]
    if arr.ndim != 4 or arr.shape[1:] != contract.IMAGE_SHAPE:
        raise InputError(f"pixels must have shape [N, 32, 32, 3], got {list(arr.shape)}")
    return arr


def decode_to_pixels(images: Sequence[bytes]) -> np.ndarray:
    """Decodes checked 32x32 RGB image bytes into uint8 [N, 32, 32, 3]."""
    from PIL import Image

    arrays = []
    for data in images:
        with Image.open(io.BytesIO(data)) as img:
            arrays.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
    if not arrays:
        return np.zeros((0,) + contract.IMAGE_SHAPE, np.uint8)
    return np.stack(arrays)


@dataclass(frozen=True)
class SkippedFile:
    """A file given or found in a folder that was not sent, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class PathPredictions(list):
    """The predictions of `predict_paths`, with `skipped`: the files not sent and why."""

    def __init__(self, predictions: Iterable[Prediction] = (),
                 skipped: Iterable[SkippedFile] = ()):
        super().__init__(predictions)
        self.skipped = list(skipped)


def _folder_entry_problem(path: Path) -> str | None:
    """Why a folder entry is not sent, or None for an image file (a link to one included)."""
    if path.is_symlink() and not path.exists():
        return "broken symbolic link"
    if path.is_dir():
        return "a folder (folders are not searched recursively)"
    if not path.is_file():
        return "not a regular file"
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return f"not an image file (accepted: {', '.join(IMAGE_EXTENSIONS)})"
    return None


def collect_paths(paths: Iterable[str | os.PathLike]) -> tuple[list, list]:
    """(files to send, `SkippedFile`s): files stay as given, a folder becomes its image files
    (sorted by name, links to files followed) and every other entry is listed with the reason.

    A path that does not exist raises `ImageError`; so does a folder with no image file.
    """
    files, skipped = [], []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = []
            for child in sorted(path.iterdir()):
                problem = _folder_entry_problem(child)
                if problem is None:
                    found.append(str(child))
                else:
                    skipped.append(SkippedFile(str(child), problem))
            if not found:
                raise InputError(f"{path}: folder has no {'/'.join(IMAGE_EXTENSIONS)} files")
            files.extend(found)
        elif path.is_file():
            files.append(str(path))
        elif os.path.lexists(path):
            raise ImageError(str(path), "broken symbolic link" if path.is_symlink()
                             else "not a regular file")
        else:
            raise ImageError(str(path), "no such file or folder")
    return files, skipped


def expand_paths(paths: Iterable[str | os.PathLike]) -> list:
    """The files `collect_paths` finds; each skipped folder entry is logged as a warning."""
    files, skipped = collect_paths(paths)
    for entry in skipped:
        logger.warning("skipped %s", entry)
    return files


def read_image_file(path: str) -> bytes:
    """The file's bytes, or `ImageError` naming it (unreadable, or far too large)."""
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise ImageError(path, f"file is {size:,} bytes, more than the {MAX_FILE_BYTES:,} "
                                   "this client reads")
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(path, f"cannot read ({exc.strerror or exc})") from None


# --------------------------------------------------------------------------------------------
# Pure payload helpers
# --------------------------------------------------------------------------------------------
def input_key_for(signature: str) -> str:
    """Input tensor name of a signature (unknown signatures are assumed to take image bytes)."""
    return SIGNATURE_INPUTS.get(signature, SIGNATURE_INPUTS[contract.SERVING_SIGNATURE])


def rest_predict_url(base_url: str, model_name: str = contract.MODEL_NAME,
                     version: int | None = None, label: str | None = None) -> str:
    """`<base>/v1/models/<name>[/versions/N | /labels/L]:predict`."""
    if version is not None and label is not None:
        raise ValueError("give a version or a label, not both")
    base = base_url.rstrip("/")
    if "://" not in base:
        base = "http://" + base
    url = f"{base}/v1/models/{model_name}"
    if version is not None:
        url += f"/versions/{int(version)}"
    elif label is not None:
        url += f"/labels/{label}"
    return url + ":predict"


def _is_pixels(images: Images) -> bool:
    return isinstance(images, np.ndarray) and images.dtype != object


def _json_values(images: Images) -> list:
    if _is_pixels(images):
        return np.asarray(images).tolist()
    return [{"b64": base64.b64encode(bytes(b)).decode("ascii")} for b in images]


def build_rest_payload(images: Images, signature: str = contract.SERVING_SIGNATURE,
                       columnar: bool = False, input_key: str | None = None) -> dict:
    """The JSON body of a TF Serving REST predict call.

    `images` is a list of bytes (encoded images or serialized tf.Examples; sent as
    `{"b64": ...}`) or a uint8 array [N, 32, 32, 3] (sent as nested lists). Row format sends
    `"instances": [value, ...]`; columnar format sends `"inputs": {input_key: [value, ...]}`.
    """
    values = _json_values(images)
    payload: dict = {"signature_name": signature}
    if columnar:
        payload["inputs"] = {input_key or input_key_for(signature): values}
    else:
        payload["instances"] = values
    return payload


def build_grpc_request(images: Images, model_name: str = contract.MODEL_NAME,
                       signature: str = contract.SERVING_SIGNATURE, version: int | None = None,
                       label: str | None = None, input_key: str | None = None):
    """A `predict_pb2.PredictRequest` for `images` (see `build_rest_payload`)."""
    if version is not None and label is not None:
        raise ValueError("give a version or a label, not both")
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    elif label is not None:
        request.model_spec.version_label = label
    if _is_pixels(images):
        tensor = tf.make_tensor_proto(np.asarray(images, dtype=np.uint8), dtype=tf.uint8)
    else:
        values = [bytes(b) for b in images]
        tensor = tf.make_tensor_proto(values, dtype=tf.string, shape=[len(values)])
    request.inputs[input_key or input_key_for(signature)].CopyFrom(tensor)
    return request


def _decode_json_string(value: Any) -> str:
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"]).decode("utf-8", "replace")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _predictions_from_columns(probabilities: Any, class_ids: Any, class_names: Any,
                              sources: Sequence[Source] | None) -> list:
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != contract.NUM_CLASSES:
        raise ServingError(f"expected probabilities of shape [N, {contract.NUM_CLASSES}], "
                           f"got {list(probs.shape)}")
    n = probs.shape[0]
    ids = np.argmax(probs, axis=1) if class_ids is None else np.asarray(class_ids).reshape(-1)
    if class_names is None:
        names = [contract.CLASS_NAMES[int(i)] for i in ids]
    else:
        names = [_decode_json_string(v) for v in np.asarray(class_names, dtype=object).reshape(-1)]
    if len(ids) != n or len(names) != n:
        raise ServingError(f"response has {n} probabilities but {len(ids)} class ids and "
                           f"{len(names)} class names")
    if sources is None:
        sources = list(range(n))
    elif len(sources) != n:
        raise ServingError(f"sent {len(sources)} images but got {n} predictions back")
    return [Prediction(class_id=int(ids[i]), class_name=names[i],
                       probabilities=[float(p) for p in probs[i]], source=sources[i])
            for i in range(n)]


def parse_rest_response(body: dict, sources: Sequence[Source] | None = None) -> list:
    """Predictions from a REST predict response, row (`predictions`) or columnar (`outputs`)."""
    if not isinstance(body, dict):
        raise ServingError(f"unexpected response: {str(body)[:200]}")
    if "error" in body:
        raise ServingError(f"server error: {body['error']}")
    prob_key = contract.PROBABILITIES_OUTPUT
    id_key = contract.CLASS_ID_OUTPUT
    name_key = contract.CLASS_NAME_OUTPUT
    if "predictions" in body:
        rows = body["predictions"]
        if rows and not isinstance(rows[0], dict):  # single-output model: values only
            return _predictions_from_columns(rows, None, None, sources)
        try:
            probs = [r[prob_key] for r in rows]
        except (KeyError, TypeError):
            raise ServingError(f"response has no '{prob_key}' output: {str(rows)[:200]}") from None
        ids = [r[id_key] for r in rows] if rows and id_key in rows[0] else None
        names = [r[name_key] for r in rows] if rows and name_key in rows[0] else None
        if not rows:
            probs = np.zeros((0, contract.NUM_CLASSES))
        return _predictions_from_columns(probs, ids, names, sources)
    if "outputs" in body:
        outputs = body["outputs"]
        if not isinstance(outputs, dict):  # single-output model: the tensor itself
            return _predictions_from_columns(outputs, None, None, sources)
        if prob_key not in outputs:
            raise ServingError(f"response has no '{prob_key}' output: {sorted(outputs)}")
        return _predictions_from_columns(outputs[prob_key], outputs.get(id_key),
                                         outputs.get(name_key), sources)
    raise ServingError(f"response has neither 'predictions' nor 'outputs': {str(body)[:200]}")


def parse_grpc_response(response, sources: Sequence[Source] | None = None) -> list:
    """Predictions from a `predict_pb2.PredictResponse`."""
    import tensorflow as tf

    outputs = response.outputs
    prob_key = contract.PROBABILITIES_OUTPUT
    if prob_key not in outputs:
        raise ServingError(f"response has no '{prob_key}' output: {sorted(outputs.keys())}")
    probs = tf.make_ndarray(outputs[prob_key])
    ids = (tf.make_ndarray(outputs[contract.CLASS_ID_OUTPUT])
           if contract.CLASS_ID_OUTPUT in outputs else None)
    names = (tf.make_ndarray(outputs[contract.CLASS_NAME_OUTPUT])
             if contract.CLASS_NAME_OUTPUT in outputs else None)
    return _predictions_from_columns(probs, ids, names, sources)


def _chunks(n: int, size: int) -> list:
    return [(start, min(start + size, n)) for start in range(0, n, size)]


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------
class ServingClient:
    """Talks to one model on one TF Serving, over REST (`rest_url`) or gRPC (`grpc_target`).

    Args:
      rest_url: REST base URL, e.g. "http://localhost:8501".
      grpc_target: gRPC "host:port", e.g. "localhost:8500".
      model_name: model name in the server's model config.
      version: ask for this version number (exclusive with `label`).
      label: ask for the version behind this label, e.g. "stable" or "canary".
      signature: signature for `predict_images` / `predict_paths`. With "serving_pixels" the
        images are decoded here and sent as pixels.
      timeout: seconds for each request (each attempt).
      retries: extra attempts after the first on UNAVAILABLE / DEADLINE_EXCEEDED (gRPC),
        connection errors, timeouts and 502/503/504 (REST). 4xx and other errors fail at once.
      batch_size: images per request; keep it <= the server's max_batch_size.
      columnar: REST only, send `"inputs"` (columnar) instead of `"instances"` (row).
      backoff: seconds before the first retry; doubles each retry (with jitter), up to 5 s.
    """

    MAX_BACKOFF_S = 5.0

    def __init__(self, rest_url: str | None = None, grpc_target: str | None = None,
                 model_name: str = contract.MODEL_NAME, version: int | None = None,
                 label: str | None = None, signature: str = contract.SERVING_SIGNATURE,
                 timeout: float = 10.0, retries: int = 3, batch_size: int = 64,
                 columnar: bool = False, backoff: float = 0.2):
        if (rest_url is None) == (grpc_target is None):
            raise ValueError("give exactly one of rest_url or grpc_target")
        if version is not None and label is not None:
            raise ValueError("give a version or a label, not both")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.rest_url = rest_url
        self.grpc_target = grpc_target
        self.model_name = model_name
        self.version = None if version is None else int(version)
        self.label = label
        self.signature = signature
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.batch_size = int(batch_size)
        self.columnar = columnar
        self.backoff = float(backoff)
        self._session = None
        self._channel = None
        self._stub = None

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._stub = None

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def transport(self) -> str:
        return "rest" if self.rest_url is not None else "grpc"

    @property
    def predict_url(self) -> str:
        """REST predict URL for this client's model, version or label."""
        if self.rest_url is None:
            raise ValueError("not a REST client")
        return rest_predict_url(self.rest_url, self.model_name, self.version, self.label)

    # -- public predict methods --------------------------------------------------------------
    def predict_images(self, images: Sequence[bytes], sources: Sequence[Source] | None = None,
                       resize: bool = False, signature: str | None = None) -> list:
        """Predicts encoded PNG/JPEG images. Each is checked first (see `check_image`)."""
        images = list(images)
        if sources is None:
            sources = list(range(len(images)))
        if len(sources) != len(images):
            raise InputError(f"{len(images)} images but {len(sources)} sources")
        checked = [check_image(data, src, resize=resize)
                   for data, src in zip(images, sources, strict=True)]
        signature = signature or self.signature
        if signature == contract.PIXELS_SIGNATURE:
            return self._predict(decode_to_pixels(checked), sources, signature)
        if signature == contract.EXAMPLES_SIGNATURE:
            raise InputError("signature 'serving_examples' takes serialized tf.Examples; "
                             "use predict_examples")
        return self._predict(checked, sources, signature)

    def predict_paths(self, paths: Iterable[str | os.PathLike], resize: bool = False,
                      signature: str | None = None) -> PathPredictions:
        """Predicts image files; a folder stands for its .png/.jpg/.jpeg/.webp files.

        Files that cannot be sent (other files in a folder, unreadable or wrong images) are
        skipped: each is logged as a warning and listed in the result's `skipped` with the
        reason, and the rest are still answered. When no file can be sent, the one file's
        `ImageError` is raised, or an `InputError` listing them all.
        """
        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        files, skipped = collect_paths(paths)
        if not files:
            raise InputError("no image files given")
        images, sources = [], []
        for f in files:
            try:
                images.append(check_image(read_image_file(f), f, resize=resize))
                sources.append(f)
            except ImageError as exc:
                skipped.append(SkippedFile(f, exc.reason))
                if len(files) == 1:
                    raise
        for entry in skipped:
            logger.warning("skipped %s", entry)
        if not images:
            raise InputError("no image could be sent: " + "; ".join(map(str, skipped)))
        return PathPredictions(
            self.predict_images(images, sources=sources, resize=resize, signature=signature),
            skipped)

    def predict_pixels(self, pixels: Any, sources: Sequence[Source] | None = None,
                       signature: str = contract.PIXELS_SIGNATURE) -> list:
        """Predicts uint8 images [N, 32, 32, 3] through the `serving_pixels` signature."""
        arr = check_pixels(pixels)
        if sources is None:
            sources = list(range(arr.shape[0]))
        if len(sources) != arr.shape[0]:
            raise InputError(f"{arr.shape[0]} images but {len(sources)} sources")
        return self._predict(arr, sources, signature)

    def predict_examples(self, examples: Sequence[bytes],
                         sources: Sequence[Source] | None = None,
                         signature: str = contract.EXAMPLES_SIGNATURE) -> list:
        """Predicts serialized tf.Examples through the `serving_examples` signature."""
        examples = [bytes(e) for e in examples]
        if sources is None:
            sources = list(range(len(examples)))
        return self._predict(examples, sources, signature)

    # -- batching ----------------------------------------------------------------------------
    def _predict(self, images: Images, sources: Sequence[Source], signature: str) -> list:
        n = len(images)
        if n == 0:
            return []
        results = []
        for start, end in _chunks(n, self.batch_size):
            batch = images[start:end]
            batch_sources = list(sources[start:end])
            if self.rest_url is not None:
                results.extend(self._predict_rest(batch, batch_sources, signature))
            else:
                results.extend(self._predict_grpc(batch, batch_sources, signature))
        return results

    # -- retries -----------------------------------------------------------------------------
    def _sleep_before_retry(self, attempt: int) -> None:
        delay = min(self.backoff * (2 ** attempt), self.MAX_BACKOFF_S)
        time.sleep(delay * random.uniform(0.5, 1.0))

    def _with_retries(self, call, describe: str):
        """Runs `call()`; it raises `_Retryable` for transient failures."""
        last: _Retryable | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                logger.warning("%s failed (%s); retry %d of %d", describe, last.error,
                               attempt, self.retries)
                self._sleep_before_retry(attempt - 1)
            try:
                return call()
            except _Retryable as exc:
                last = exc
        attempts = self.retries + 1
        tries = f"{attempts} attempt" + ("s" if attempts != 1 else "")
        if last.timeout:
            raise ServingTimeoutError(
                f"{describe} timed out after {self.timeout:g}s ({tries}): {last.error}")
        raise ServingUnavailableError(f"{describe} failed ({tries}): {last.error}")

    # -- REST --------------------------------------------------------------------------------
    def _predict_rest(self, batch: Images, sources: list, signature: str) -> list:
        import requests

        if self._session is None:
            self._session = requests.Session()
        url = self.predict_url
        shown = urls.redact(url)  # what messages and logs say: never user:password@
        payload = build_rest_payload(batch, signature, columnar=self.columnar)

        def call():
            try:
                resp = self._session.post(url, json=payload, timeout=self.timeout)
            except requests.exceptions.Timeout as exc:
                raise _Retryable(f"no answer within {self.timeout:g}s ({exc})",
                                 timeout=True) from None
            except requests.exceptions.ConnectionError as exc:
                raise _Retryable(f"cannot connect ({_connection_reason(exc)})") from None
            if resp.status_code in RETRYABLE_HTTP_STATUSES:
                raise _Retryable(f"HTTP {resp.status_code}: {_rest_error_text(resp)}")
            if resp.status_code >= 400:
                raise ServerError(resp.status_code, _rest_error_text(resp), shown)
            try:
                return resp.json()
            except ValueError:
                raise ServingError(f"{shown} answered {resp.status_code} with a body that is not "
                                   f"JSON: {resp.text[:200]!r}") from None

        body = self._with_retries(call, f"POST {shown}")
        return parse_rest_response(body, sources)

    # -- gRPC --------------------------------------------------------------------------------
    def _grpc_stub(self):
        if self._stub is None:
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc

            options = [("grpc.max_send_message_length", 64 << 20),
                       ("grpc.max_receive_message_length", 64 << 20)]
            self._channel = grpc.insecure_channel(self.grpc_target, options=options)
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        return self._stub

    def _predict_grpc(self, batch: Images, sources: list, signature: str) -> list:
        import grpc

        stub = self._grpc_stub()
        request = build_grpc_request(batch, self.model_name, signature, self.version, self.label)

        def call():
            try:
                return stub.Predict(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                name = code.name if code is not None else "UNKNOWN"
                details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
                if name in RETRYABLE_GRPC_CODES:
                    raise _Retryable(f"{name}: {details}",
                                     timeout=name == "DEADLINE_EXCEEDED") from None
                raise ServerError(name, details, self.grpc_target) from None

        response = self._with_retries(call, f"gRPC Predict to {self.grpc_target}")
        return parse_grpc_response(response, sources)


class _Retryable(Exception):
    def __init__(self, error: str, timeout: bool = False):
        super().__init__(error)
        self.error = error
        self.timeout = timeout


def _rest_error_text(resp) -> str:
    """TF Serving puts the reason in `{"error": "..."}`; proxies send plain text or HTML."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    text = (resp.text or "").strip()
    return text[:500] if text else (resp.reason or "no error text")


def _connection_reason(exc: Exception) -> str:
    """The useful part of a requests/urllib3 connection error, e.g. "Connection refused"."""
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if match:
        return match.group(1).strip()
    return text if len(text) <= 300 else text[:300] + "..."
