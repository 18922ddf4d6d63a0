"""TFLite conversion and on-device-style verification, independent of TFX (tested on its own).

Every mode folds the preprocessing into the .tflite: the input is raw pixel values, [1, 32, 32, 3],
uint8 for `int8` (an app hands over camera pixels as they are) and float32 0..255 otherwise. The
output is the 10 class probabilities (uint8-quantized for `int8`, float32 otherwise).
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import tensorflow as tf

from modules import contract, export, preprocessing, tflite_runtime


class ConversionError(RuntimeError):
    """The converter could not produce a model in the requested mode."""


def check_mode(mode: str) -> str:
    if mode not in contract.TFLITE_MODES:
        raise ValueError(f"Unknown TFLite mode {mode!r}; choose one of "
                         f"{', '.join(contract.TFLITE_MODES)}.")
    return mode


class _InferenceModule(tf.Module):
    """Raw pixels (as float 0..255) -> probabilities, with the Transform's scaling folded in."""

    def __init__(self, keras_model, tta: str | export.ServingViews):
        super().__init__()
        self.model = keras_model
        self._views = export.serving_views(tta)

    @tf.function(input_signature=[tf.TensorSpec([1, *contract.IMAGE_SHAPE], tf.float32,
                                                name=contract.PIXELS_INPUT)])
    def predict(self, pixels):
        images = preprocessing.scale_pixels(pixels)
        return {contract.PROBABILITIES_OUTPUT: export.predict_probabilities(
            self.model, images, self._views)}


def inference_signature(keras_model, tta: str | export.ServingViews, workdir: str):
    """The inference function as a signature of a reloaded SavedModel.

    Converting a concrete function that captures live Keras 3 variables aborts the TFLite
    converter (an LLVM error that kills the process); a saved and reloaded signature converts.
    """
    module = _InferenceModule(keras_model, tta)
    path = os.path.join(workdir, "inference")
    tf.saved_model.save(module, path, signatures={"predict": module.predict})
    loaded = tf.saved_model.load(path)
    return loaded.signatures["predict"], loaded


def convert(keras_model, tta: str | export.ServingViews, mode: str,
            representative_images: Callable[[], Iterable[np.ndarray]] | None = None) -> bytes:
    """Returns the .tflite flatbuffer; int8 needs representative images (uint8 [32, 32, 3])."""
    check_mode(mode)
    with tempfile.TemporaryDirectory(prefix="tflite-") as workdir:
        signature, loaded = inference_signature(keras_model, tta, workdir)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([signature], loaded)
        _configure(converter, mode, representative_images)
        try:
            with tflite_runtime.native_logs_hidden():
                return converter.convert()
        except Exception as error:  # the converter's own errors are long MLIR dumps
            text = str(error).strip()
            first_line = text.splitlines()[0] if text else repr(error)
            raise ConversionError(
                f"TFLite conversion in mode {mode!r} failed: {first_line}") from error


def _configure(converter, mode: str, representative_images) -> None:
    if mode != contract.TFLITE_NONE:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == contract.TFLITE_FLOAT16:
        converter.target_spec.supported_types = [tf.float16]
    if mode == contract.TFLITE_INT8:
        if representative_images is None:
            raise ConversionError("int8 quantization needs a representative dataset.")

        def representative() -> Iterator[list]:
            for image in representative_images():
                yield [np.asarray(image, np.float32)[np.newaxis]]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8


class TFLiteClassifier:
    """Runs one image at a time the way a phone app would, quantizing input/output as needed."""

    def __init__(self, tflite_model: bytes):
        self.interpreter = tflite_runtime.make_interpreter(tflite_model)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def input_dtype(self):
        return self.input["dtype"]

    @property
    def output_dtype(self):
        return self.output["dtype"]

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """uint8 [32, 32, 3] pixels -> float probabilities [10]."""
        if self.input_dtype == np.uint8:
            scale, zero = self.input["quantization"]
            value = np.round(image.astype(np.float32) / scale + zero) if scale else image
            value = np.clip(value, 0, 255).astype(np.uint8)
        else:
            value = image.astype(self.input_dtype)
        self.interpreter.set_tensor(self.input["index"], value[np.newaxis])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.output["index"])[0]
        if self.output_dtype in (np.uint8, np.int8):
            scale, zero = self.output["quantization"]
            return (raw.astype(np.float32) - zero) * scale
        return raw.astype(np.float32)


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of `runs` calls of `fn`, after one warm-up call."""
    fn()
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return float(np.median(timings))


def median_latency_ms(classifier: TFLiteClassifier, image: np.ndarray, runs: int = 100) -> float:
    """Single-image CPU latency on one thread, after a warm-up call."""
    return median_seconds(lambda: classifier.probabilities(image), runs) * 1000.0


def verify(tflite_model: bytes, images: np.ndarray, labels: np.ndarray,
           reference_probabilities: np.ndarray) -> dict[str, float]:
    """Accuracy, top-1 agreement with the float model, largest probability gap, latency."""
    classifier = TFLiteClassifier(tflite_model)
    probabilities = np.stack([classifier.probabilities(image) for image in images])
    predicted = probabilities.argmax(axis=1)
    return {
        "accuracy": float((predicted == labels).mean()),
        "agreement_with_float": float((predicted == reference_probabilities.argmax(1)).mean()),
        "max_probability_gap": float(np.abs(probabilities - reference_probabilities).max()),
        "latency_ms": median_latency_ms(classifier, images[0]),
        "size_bytes": len(tflite_model),
        "input_dtype": np.dtype(classifier.input_dtype).name,
        "output_dtype": np.dtype(classifier.output_dtype).name,
    }


def directory_size(path: str) -> int:
    total = 0
    for root, _, files in tf.io.gfile.walk(path):
        total += sum(tf.io.gfile.stat(os.path.join(root, name)).length for name in files)
    return total


def float_weights_bytes(keras_model) -> int:
    """Size of the model's weights as float32: what int8 is meant to shrink."""
    return int(sum(np.prod(w.shape) for w in keras_model.weights) * 4)


def savedmodel_latency_ms(signature, image: np.ndarray, runs: int = 50) -> float:
    """Batch-1 latency of the float SavedModel's pixels signature, for the side-by-side table."""
    batch = tf.constant(image[np.newaxis])
    return median_seconds(lambda: signature(pixels=batch), runs) * 1000.0
