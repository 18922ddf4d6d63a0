"""The batch-inference stage (pipeline.batch_inference) through TFX's LocalDagRunner.

A small real SavedModel with the served model's `serving_examples` contract (serialized
tf.Examples in, probabilities out; a mean-colour classifier) sits in a Model artifact folder the
way the Trainer writes it; Importers hand it and a blessing to the stage's three real components:
ImageFolderExampleGen, TFX's BulkInferrer and the BatchPredictionsWriter.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from PIL import Image
from tfx import v1 as tfx

from modules import contract
from pipeline.batch_inference import batch_inference_components
from reports import runs
from serving import local_models
from tests.unit.test_model_input_faults import exported  # noqa: F401 - a fixture


class _MeanColourExamples(tf.Module):
    """Probabilities from the mean red, green and blue of each example's image."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, examples):
        parsed = tf.io.parse_example(
            examples, {contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})
        pixels = tf.map_fn(
            lambda b: tf.cast(tf.io.decode_image(b, channels=3, expand_animations=False),
                              tf.float32),
            parsed[contract.IMAGE_KEY], fn_output_signature=tf.TensorSpec([None, None, 3]))
        means = tf.reduce_mean(pixels, axis=[1, 2]) / 255.0
        logits = tf.concat([means, tf.zeros([tf.shape(means)[0], 7])], axis=1) * 10.0
        return {contract.PROBABILITIES_OUTPUT: tf.nn.softmax(logits)}


def _encode(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return out.getvalue()


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory) -> Path:
    uri = tmp_path_factory.mktemp("model")
    module = _MeanColourExamples()
    tf.saved_model.save(module, str(uri / contract.SERVING_MODEL_DIR),
                        signatures={contract.BATCH_EXAMPLES_SIGNATURE: module.serve})
    return uri


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    colours = {"red.png": 0, "green.webp": 1, "blue.png": 2}
    for name, channel in colours.items():
        pixels = np.zeros((32, 32, 3), np.uint8)
        pixels[..., channel] = 255
        (folder / name).write_bytes(_encode(pixels, "WEBP" if name.endswith("webp") else "PNG"))
    (folder / "large.png").write_bytes(_encode(np.zeros((48, 48, 3), np.uint8)))
    (folder / "notes.txt").write_text("not an image")
    return folder


def _run(tmp_path: Path, model_uri: Path, images: Path, blessed: int, resize: bool = False):
    model = tfx.dsl.Importer(source_uri=str(model_uri),
                             artifact_type=tfx.types.standard_artifacts.Model).with_id("model")
    blessing_uri = tmp_path / "blessing"
    blessing_uri.mkdir()
    blessing = tfx.dsl.Importer(
        source_uri=str(blessing_uri), artifact_type=tfx.types.standard_artifacts.ModelBlessing,
        custom_properties={contract.BLESSED_PROPERTY: blessed}).with_id("blessing")
    stage = batch_inference_components(str(images), model.outputs["result"],
                                       blessing.outputs["result"], resize=resize)
    metadata = tmp_path / "metadata.sqlite"
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata)
    config.sqlite.connection_mode = 3  # READWRITE_OPENCREATE
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="batch", pipeline_root=str(tmp_path / "root"),
        components=[model, blessing, *stage], metadata_connection_config=config,
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"]))
    view = runs.RunView(runs.open_store(str(metadata)))
    return view


def test_blessed_model_classifies_the_folder_and_lists_refusals(tmp_path, model_uri, images):
    view = _run(tmp_path, model_uri, images, blessed=1)
    written = view.output(contract.BATCH_PREDICTIONS_NODE, "predictions")
    assert runs.custom_value(written, contract.PREDICTIONS_COUNT_PROPERTY) == 3
    for name in (contract.PREDICTIONS_CSV, contract.PREDICTIONS_JSONL):
        rows = local_models.read_predictions(str(Path(written.uri) / name))
        assert [(Path(r["file"]).name, r["class_name"]) for r in rows] == [
            ("blue.png", "bird"), ("green.webp", "automobile"), ("red.png", "airplane")]
        assert list(rows[0]) == list(contract.PREDICTION_COLUMNS)
    examples = view.output(contract.IMAGE_FOLDER_EXAMPLE_GEN_NODE, "examples")
    assert runs.custom_value(examples, contract.REFUSED_IMAGES_PROPERTY) == 2
    refused = json.loads((Path(examples.uri) / contract.REFUSED_IMAGES_FILE).read_text())
    reasons = {Path(r["file"]).name: r["reason"] for r in refused}
    assert set(reasons) == {"large.png", "notes.txt"} and "48x48" in reasons["large.png"]
    result = view.output(contract.BULK_INFERRER_NODE, "inference_result")
    assert list(Path(result.uri).glob("*.gz"))  # the PredictionLogs stay beside


def test_resize_takes_the_large_image_in(tmp_path, model_uri, images):
    view = _run(tmp_path, model_uri, images, blessed=1, resize=True)
    written = view.output(contract.BATCH_PREDICTIONS_NODE, "predictions")
    assert runs.custom_value(written, contract.PREDICTIONS_COUNT_PROPERTY) == 4


def test_unblessed_model_predicts_nothing(tmp_path, model_uri, images, caplog):
    view = _run(tmp_path, model_uri, images, blessed=0)
    written = view.output(contract.BATCH_PREDICTIONS_NODE, "predictions")
    assert runs.custom_value(written, contract.PREDICTIONS_COUNT_PROPERTY) == 0
    assert (Path(written.uri) / contract.PREDICTIONS_CSV).read_text().startswith("file,")
    assert "not blessed" in caplog.text


@pytest.mark.parametrize("target", contract.COMPILE_TARGETS)
def test_the_stage_compiles_for_both_kubeflow_targets(tmp_path, target, monkeypatch):
    """--predict-dir adds the three nodes; the custom artifact title imports in the container."""
    import yaml
    from tfx.utils import import_utils

    from cli import kubeflow

    monkeypatch.setattr(kubeflow.logs, "configure", lambda verbose=False: None)
    spec_yaml = tmp_path / "spec.yaml"
    assert kubeflow.main(["--pipeline-root", "gs://b/root", "--data-root", "gs://b/data",
                          "--image", "registry/cifar10-tfx:1", "--predict-dir", "gs://b/images",
                          "--target", target, "--output", str(tmp_path / "spec.json"),
                          "--kfp-output", str(spec_yaml)], environ={}) == 0
    spec = yaml.safe_load(spec_yaml.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    for node in (contract.IMAGE_FOLDER_EXAMPLE_GEN_NODE, contract.BULK_INFERRER_NODE,
                 contract.BATCH_PREDICTIONS_NODE):
        assert node in tasks
    assert "gs://b/images" in spec_yaml.read_text()
    assert import_utils.import_class_by_path("cifar10.BatchPredictions").TYPE_NAME == \
        "cifar10.BatchPredictions"


def test_the_project_export_runs_in_the_bulk_inferrer(tmp_path, exported, images):  # noqa: F811
    """The BulkInferrer loads SavedModels TF1-style (as TF Serving's C++ loader does): the real
    export (modules.export) must restore its Keras 3 weights that way, and answer as TF2 does."""
    view = _run(tmp_path, Path(exported[0]), images, blessed=1)
    written = view.output(contract.BATCH_PREDICTIONS_NODE, "predictions")
    rows = local_models.read_predictions(str(Path(written.uri) / contract.PREDICTIONS_CSV))
    assert [Path(r["file"]).name for r in rows] == ["blue.png", "green.webp", "red.png"]
    pixels = []
    for row in rows:
        with Image.open(row["file"]) as image:
            pixels.append(np.asarray(image.convert("RGB")))
    loaded = tf.saved_model.load(str(Path(exported[0]) / contract.SERVING_MODEL_DIR))
    expected = loaded.signatures[contract.PIXELS_SIGNATURE](pixels=tf.constant(np.stack(pixels)))
    got = np.array([[r[c] for c in contract.PREDICTION_COLUMNS[3:]] for r in rows])
    np.testing.assert_allclose(got, expected[contract.PROBABILITIES_OUTPUT].numpy(), atol=1e-5)
