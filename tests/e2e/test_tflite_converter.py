"""The TFLite converter on the model the e2e run trained, with the real LiteRT interpreter."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

from components.tflite_converter import TFLiteConverter, conversion
from modules import cifar10_binary, contract, export, preprocessing, tflite_runtime
from pipeline import configs
from reports import runs, tables

# Stated tolerances, on real test images, against the float SavedModel's own predictions. The model
# under test trained a few epochs on 3,000 images, so many of its predictions are near-ties that a
# little quantization noise flips (seen: int8 agreement 0.97, probability gap up to 0.08; dynamic
# agreement 0.95 to 1.0; float16 0.987: two of 150 images whose top two classes were nearly
# tied flipped, while every probability stayed within 0.01); a broken conversion lands far
# outside these. For float16 the probability gap is the strict check. Full-data figures for the
# default int8 mode are in benchmarks/RESULTS.md.
TOLERANCES = {  # mode: (minimum top-1 agreement, largest probability gap)
    "int8": (0.88, 0.20),
    "float16": (0.97, 0.01),
    "dynamic": (0.92, 0.10),
    "none": (1.0, 1e-4),
}
EXPECTED_TYPES = {"int8": ("uint8", "uint8"), "float16": ("float32", "float32"),
                  "dynamic": ("float32", "float32"), "none": ("float32", "float32")}


@pytest.fixture(scope="module")
def trained(trained_pipeline, small_cifar10):
    store = runs.open_store(str(trained_pipeline.metadata_path))
    model_uri = runs.latest_trained_model(store).uri
    keras_model, settings = export.load_keras_model(model_uri)
    records = list(cifar10_binary.read_records(
        str(small_cifar10 / "cifar-10-batches-bin" / "test_batch.bin")))[:150]
    calibration = [r.image for r in cifar10_binary.read_records(
        str(small_cifar10 / "cifar-10-batches-bin" / "data_batch_1.bin"))][:100]
    images = np.stack([r.image for r in records])
    labels = np.array([r.label for r in records])
    tta = export.settings_serving_views(settings)
    # The float network on the views the .tflite computes: a fixed batch, as the converter traces
    # it (flip_if_unsure averages both views everywhere there; the SavedModel gates them).
    reference = export.predict_probabilities(
        keras_model, preprocessing.scale_pixels(tf.constant(images)), tta).numpy()
    return keras_model, tta, calibration, images, labels, reference


@pytest.mark.parametrize("mode", contract.TFLITE_MODES)
def test_each_mode_loads_and_agrees_with_the_float_model(trained, mode):
    keras_model, tta, calibration, images, labels, reference = trained
    tflite = conversion.convert(keras_model, tta, mode, lambda: iter(calibration))
    metrics = conversion.verify(tflite, images, labels, reference)
    assert (metrics["input_dtype"], metrics["output_dtype"]) == EXPECTED_TYPES[mode]
    min_agreement, max_gap = TOLERANCES[mode]
    assert metrics["agreement_with_float"] >= min_agreement, metrics
    assert metrics["max_probability_gap"] <= max_gap, metrics
    interpreter = tflite_runtime.make_interpreter(tflite)
    assert list(interpreter.get_input_details()[0]["shape"]) == [1, 32, 32, 3]
    assert list(interpreter.get_output_details()[0]["shape"]) == [1, contract.NUM_CLASSES]


def test_int8_takes_raw_pixels(trained):
    keras_model, tta, calibration, *_ = trained
    tflite = conversion.convert(keras_model, tta, "int8", lambda: iter(calibration))
    details = tflite_runtime.make_interpreter(tflite).get_input_details()[0]
    scale, zero_point = details["quantization"]
    assert zero_point == 0 and abs(scale - 1.0) < 0.01  # a pixel value is its own quantized value


def test_int8_is_much_smaller_than_float(trained):
    keras_model, tta, calibration, *_ = trained
    int8 = conversion.convert(keras_model, tta, "int8", lambda: iter(calibration))
    assert conversion.float_weights_bytes(keras_model) / len(int8) > 3.0


def test_pushed_artifact_and_results_page(trained_pipeline):
    (version,) = trained_pipeline.versions(trained_pipeline.tflite_dir)
    folder = trained_pipeline.tflite_dir / version
    labels = (folder / contract.LABELS_FILE).read_text().split()
    assert labels == list(contract.CLASS_NAMES)
    metrics = json.loads((folder / contract.TFLITE_METRICS_FILE).read_text())
    assert metrics["mode"] == "int8"
    assert metrics["tflite"]["input_dtype"] == "uint8"
    page = tables.tflite_results_markdown(metrics)
    assert "| TFLite int8 |" in page and "| TFLite float32 |" in page
    assert f"{metrics['tflite']['accuracy']:.2%}" in page
    assert (folder / contract.TFLITE_RESULTS_FILE).read_text() == page
    interpreter = tflite_runtime.make_interpreter((folder / contract.TFLITE_FILE).read_bytes())
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8


def test_unknown_mode_is_a_clear_error():
    from tfx import v1 as tfx

    channel = lambda t: tfx.dsl.Channel(type=t)  # noqa: E731
    with pytest.raises(ValueError, match="Unknown TFLite mode 'int4'; choose one of int8"):
        TFLiteConverter(model=channel(standard_artifacts.Model),
                        examples=channel(standard_artifacts.Examples),
                        model_blessing=channel(standard_artifacts.ModelBlessing), mode="int4")
    with pytest.raises(ValueError, match="tflite_mode must be one of"):
        configs.PipelineConfig(tflite_mode="int4")
