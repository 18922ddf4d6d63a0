"""Classifying image files without TF Serving: the pushed SavedModel or its .tflite, run here.

`cifar10-tfx predict --saved-model PATH` and `--tflite PATH` use these back ends; the TF Serving
client (serving.client.ServingClient) is the third. All three take the same checked image bytes
(serving.client.check_image), answer with the same `Prediction`s and are driven by the same
`predict_files` loop, so the files skipped, the progress bar and the output rows
(`write_predictions`: CSV or JSON Lines) never depend on where the model runs.
"""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from typing import IO, Protocol

import numpy as np

from modules import contract, tflite_runtime
from serving import model_base
from serving.client import (
    ImageError,
    InputError,
    PathPredictions,
    Prediction,
    SkippedFile,
    check_image,
    collect_paths,
    decode_to_pixels,
    read_image_file,
)


class Backend(Protocol):
    """Anything that classifies checked 32x32 image bytes (ServingClient is one)."""

    def predict_images(self, images: Sequence[bytes], sources: Sequence | None = None) -> list:
        ...


def _predictions(probabilities: np.ndarray, sources: Sequence) -> list[Prediction]:
    return [Prediction(int(np.argmax(row)), contract.CLASS_NAMES[int(np.argmax(row))],
                       [float(p) for p in row], source)
            for row, source in zip(probabilities, sources, strict=True)]


def newest_version(path: str, model_file: str) -> str:
    """`path` itself when it holds `model_file`, else its newest integer version that does."""
    fs = model_base.filesystem_for(path)
    if not fs.exists(path):
        raise InputError(f"{path}: no such file or folder")
    if fs.exists(fs.join(path, model_file)):
        return path
    versions = model_base.list_versions(path, fs, containing=model_file)
    if not versions:
        raise InputError(f"{path}: neither a model ({model_file}) nor a model base path holding "
                         f"versions with one")
    return fs.join(path, str(versions[-1]))


class SavedModelBackend:
    """The served SavedModel, loaded here: a version folder, or a base path (newest version)."""

    def __init__(self, path: str):
        import tensorflow as tf

        self.path = newest_version(path, contract.SAVED_MODEL_FILE)
        try:
            self._model = tf.saved_model.load(self.path, tags=[contract.SERVING_TAG])
        except (tf.errors.OpError, ValueError, IndexError, OSError) as error:
            # e.g. a variables shard missing or cut off: TensorFlow's own traceback is 50 lines
            raise InputError(f"{self.path}: SavedModel does not load "
                             f"({model_base.first_line(error)})") from None
        self._signature = _serving_signature(self._model, self.path)

    def predict_images(self, images: Sequence[bytes], sources: Sequence | None = None) -> list:
        """Encoded 32x32 PNG/JPEG bytes through `serving_default`, as TF Serving would run it."""
        import tensorflow as tf

        sources = list(range(len(images))) if sources is None else list(sources)
        if not images:
            return []
        outputs = self._signature(**{contract.IMAGE_BYTES_INPUT: tf.constant(list(images))})
        return _predictions(outputs[contract.PROBABILITIES_OUTPUT].numpy(), sources)


def _serving_signature(model, path: str):
    """The model's serving signature, or InputError naming `path` when this is another
    SavedModel: it would fail deep inside TensorFlow, printing the images as bytes."""
    signatures = model.signatures
    if contract.SERVING_SIGNATURE not in signatures:
        raise InputError(f"{path}: SavedModel has no '{contract.SERVING_SIGNATURE}' signature "
                         f"(has {sorted(signatures)}): not a model pushed by this pipeline")
    signature = signatures[contract.SERVING_SIGNATURE]
    inputs = set(signature.structured_input_signature[1])
    outputs = set(signature.structured_outputs)
    if inputs != {contract.IMAGE_BYTES_INPUT} or contract.PROBABILITIES_OUTPUT not in outputs:
        raise InputError(f"{path}: SavedModel signature '{contract.SERVING_SIGNATURE}' takes "
                         f"{sorted(inputs)} and returns {sorted(outputs)}; expected "
                         f"['{contract.IMAGE_BYTES_INPUT}'] and '{contract.PROBABILITIES_OUTPUT}'"
                         ": not a model pushed by this pipeline")
    return signature


class TFLiteBackend:
    """The pushed .tflite (a file, a version folder or a base path), one image per invocation
    as on a device; int8 inputs and outputs are (de)quantized with the model's own scales."""

    def __init__(self, path: str):
        if not path.endswith(".tflite"):
            path = os.path.join(newest_version(path, contract.TFLITE_FILE), contract.TFLITE_FILE)
        self.path = path
        fs = model_base.filesystem_for(path)
        if not fs.exists(path):
            raise InputError(f"{path}: no such .tflite file")
        with fs.open(path, "rb") as f:
            content = f.read()
        if not content:
            raise InputError(f"{path}: file is empty")
        try:
            self._interpreter = tflite_runtime.make_interpreter(content)
        except (ValueError, RuntimeError) as error:
            raise InputError(f"{path}: not a TFLite model this interpreter can run "
                             f"({error})") from None
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]

    def _probabilities(self, image: np.ndarray) -> np.ndarray:
        dtype = self._input["dtype"]
        value = image.astype(np.float32)
        if dtype in (np.uint8, np.int8):
            scale, zero = self._input["quantization"]
            if scale:
                value = np.round(value / scale + zero)
            info = np.iinfo(dtype)
            value = np.clip(value, info.min, info.max)
        self._interpreter.set_tensor(self._input["index"], value.astype(dtype)[np.newaxis])
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output["index"])[0]
        if self._output["dtype"] in (np.uint8, np.int8):
            scale, zero = self._output["quantization"]
            return (raw.astype(np.float32) - zero) * scale
        return raw.astype(np.float32)

    def predict_images(self, images: Sequence[bytes], sources: Sequence | None = None) -> list:
        sources = list(range(len(images))) if sources is None else list(sources)
        pixels = decode_to_pixels(list(images))
        return _predictions(np.stack([self._probabilities(p) for p in pixels])
                            if len(pixels) else np.zeros((0, contract.NUM_CLASSES)), sources)


class _NoBar:
    """What predict_files uses when tqdm is not installed: no bar."""

    def __init__(self, **_: object):
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def update(self, _: int) -> None:
        pass


def predict_files(backend: Backend, paths: Iterable[str | os.PathLike], resize: bool = False,
                  batch_size: int = 64, progress: bool | None = None) -> PathPredictions:
    """Classifies files and folders' image files in batches; bad files are skipped and named.

    The files are checked as the TF Serving client checks them (serving.client.collect_paths,
    check_image): those that fail land in the result's `skipped` with the reason, the rest are
    answered. `progress`: a tqdm bar on stderr (None: only on a terminal, for more than one
    batch).
    """
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - in the lock; only the bar depends on it
        progress = False
        tqdm = _NoBar
    files, skipped = collect_paths([paths] if isinstance(paths, str | os.PathLike) else paths)
    if not files:
        raise InputError("no image files given")
    predictions: list[Prediction] = []
    disable = (None if len(files) > batch_size else True) if progress is None else not progress
    with tqdm(total=len(files), unit="image", disable=disable, desc="predict") as bar:
        for start in range(0, len(files), batch_size):
            images, sources = [], []
            for path in files[start:start + batch_size]:
                try:
                    images.append(check_image(read_image_file(path), path, resize=resize))
                    sources.append(path)
                except ImageError as error:
                    skipped.append(SkippedFile(path, error.reason))
            if images:
                predictions.extend(backend.predict_images(images, sources=sources))
            bar.update(len(files[start:start + batch_size]))
    if not predictions:
        raise InputError("no image could be classified: " + "; ".join(map(str, skipped)))
    return PathPredictions(predictions, skipped)


def prediction_row(prediction: Prediction) -> dict:
    """One output row: file, class_id, class_name, then p_<class> for the ten classes."""
    values = [str(prediction.source), prediction.class_id, prediction.class_name,
              *(float(p) for p in prediction.probabilities)]
    return dict(zip(contract.PREDICTION_COLUMNS, values, strict=True))


def write_predictions(predictions: Iterable[Prediction], output_format: str, out: IO[str]) -> int:
    """Writes CSV (with a header) or JSON Lines rows, the same columns; returns the row count."""
    if output_format not in contract.PREDICTION_FORMATS:
        raise ValueError(f"format must be one of {', '.join(contract.PREDICTION_FORMATS)}")
    writer = csv.DictWriter(out, fieldnames=contract.PREDICTION_COLUMNS, lineterminator="\n") \
        if output_format == "csv" else None
    if writer is not None:
        writer.writeheader()
    count = 0
    for prediction in predictions:
        row = prediction_row(prediction)
        if writer is not None:
            writer.writerow(row)
        else:
            out.write(json.dumps(row) + "\n")
        count += 1
    return count


def read_predictions(path: str) -> list[dict]:
    """Rows written by `write_predictions` (CSV or JSON Lines, told by the extension), typed."""
    with open(path, newline="") as f:
        if path.endswith(".csv"):
            rows = list(csv.DictReader(f))
        else:
            rows = [json.loads(line) for line in f if line.strip()]
    return [{key: (str(value) if key in ("file", "class_name") else
                   int(value) if key == "class_id" else float(value))
             for key, value in row.items()} for row in rows]
