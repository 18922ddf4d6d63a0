"""End to end: the whole DAG through LocalDagRunner on a small real CIFAR-10 fixture."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import tensorflow as tf

from modules import cifar10_binary, contract
from reports import runs
from tests.support.pipeline_runs import copy_fixture, run_pipeline

pytestmark = pytest.mark.e2e

NODES = {"Cifar10ExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
         "Transform", "Tuner", "Trainer", "ServedModelBaseline", "Evaluator",
         "previous_statistics_resolver",
         "TFLiteConverter", "Pusher"}


def test_every_component_ran_once(trained_pipeline):
    store = runs.open_store(str(trained_pipeline.metadata_path))
    states = runs.run_executions(store)
    assert set(states) == NODES
    assert all(s == ["complete"] for s in states.values()), states
    assert set(runs.pipeline_nodes(store, runs.find_run(store))) == NODES  # the run's own DAG


def test_model_was_blessed_and_pushed_with_its_tflite_twin(trained_pipeline):
    outcome = runs.latest_outcome(str(trained_pipeline.metadata_path))
    assert outcome.blessed and outcome.pushed
    assert outcome.test_accuracy is not None and outcome.test_accuracy >= 0.15
    (version,) = trained_pipeline.versions(trained_pipeline.serving_dir)
    assert str(outcome.pushed_version) == version
    pushed = trained_pipeline.serving_dir / version
    assert (pushed / "saved_model.pb").is_file()
    assert (pushed / "assets.extra" / "tf_serving_warmup_requests").is_file()
    assert trained_pipeline.versions(trained_pipeline.tflite_dir) == [version]
    tflite = trained_pipeline.tflite_dir / version
    assert {p.name for p in tflite.iterdir()} >= {"model.tflite", "labels.txt", "metrics.json"}
    # no staging leftovers that TF Serving might trip over
    assert not [p for p in trained_pipeline.serving_dir.iterdir() if p.name.startswith(".")]


def test_runner_says_where_the_model_went(trained_pipeline):
    out = trained_pipeline.process.stdout
    assert "Test accuracy:" in out
    assert str(trained_pipeline.serving_dir) in out
    assert "TFLite:" in out


def _test_images(data_dir, count=16):
    path = data_dir / "cifar-10-batches-bin" / "test_batch.bin"
    records = list(cifar10_binary.read_records(str(path)))[:count]
    return np.stack([r.image for r in records])


def test_pushed_model_returns_ten_probabilities_per_image(trained_pipeline, small_cifar10):
    (version,) = trained_pipeline.versions(trained_pipeline.serving_dir)
    model = tf.saved_model.load(str(trained_pipeline.serving_dir / version))
    images = _test_images(small_cifar10)
    by_pixels = model.signatures[contract.PIXELS_SIGNATURE](pixels=tf.constant(images))
    probabilities = by_pixels[contract.PROBABILITIES_OUTPUT].numpy()
    assert probabilities.shape == (len(images), contract.NUM_CLASSES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    names = by_pixels[contract.CLASS_NAME_OUTPUT].numpy().astype(str)
    assert set(names) <= set(contract.CLASS_NAMES)

    pngs = tf.constant([tf.io.encode_png(image).numpy() for image in images])
    by_png = model.signatures[contract.SERVING_SIGNATURE](image_bytes=pngs)
    np.testing.assert_allclose(by_png[contract.PROBABILITIES_OUTPUT].numpy(), probabilities,
                               atol=1e-5)


def test_too_tight_tflite_limit_fails_the_run_and_pushes_nothing(trained_pipeline, small_cifar10):
    before = (trained_pipeline.versions(trained_pipeline.serving_dir),
              trained_pipeline.versions(trained_pipeline.tflite_dir))
    # A negative allowance demands the int8 model beat the float one by 100 points: impossible.
    run = run_pipeline(small_cifar10, trained_pipeline.output_dir,
                       "--tflite-max-accuracy-drop", "-1")
    assert run.process.returncode == 1, run.explain()
    assert "points below the float SavedModel" in run.process.stderr
    assert "Nothing was pushed" in run.process.stderr
    after = (run.versions(run.serving_dir), run.versions(run.tflite_dir))
    assert after == before
    states = runs.run_executions(runs.open_store(str(run.metadata_path)))
    assert states["TFLiteConverter"] == ["failed"] and "Pusher" not in states
    assert states["Trainer"] == ["cached"]  # nothing upstream was redone


def test_out_of_range_label_stops_at_example_validator(small_cifar10, tmp_path):
    data = copy_fixture(small_cifar10, tmp_path / "bad-data")
    batch = data / "cifar-10-batches-bin" / "data_batch_1.bin"
    raw = bytearray(batch.read_bytes())
    raw[5 * contract.RECORD_BYTES] = 12  # the label byte of record 5
    batch.write_bytes(bytes(raw))

    run = run_pipeline(data, tmp_path / "out")
    assert run.process.returncode == 1, run.explain()
    assert "split 'train', feature 'label'" in run.process.stderr
    assert "schema" in run.process.stderr
    states = runs.run_executions(runs.open_store(str(run.metadata_path)))
    assert states["ExampleValidator"] == ["failed"]
    assert not {"Transform", "Trainer", "Evaluator", "Pusher"} & set(states)
    assert run.versions(run.serving_dir) == [] and run.versions(run.tflite_dir) == []


def test_the_served_model_is_the_baseline_and_is_not_pushed_twice(trained_pipeline,
                                                                    small_cifar10, tmp_path):
    """The same command again: the cached model is judged against its own served copy and
    nothing new is published. Another output folder pushing into the same --serving-dir is
    judged against the model served there, which its own metadata store never saw."""
    output_dir = tmp_path / "again"
    shutil.copytree(trained_pipeline.output_dir, output_dir)
    before = trained_pipeline.versions(output_dir / contract.SERVING_BASE_DIR)
    again = run_pipeline(small_cifar10, output_dir)
    assert again.process.returncode == 0, again.explain()
    assert f"version {before[-1]} already serves this model" in again.process.stdout
    assert again.versions(again.serving_dir) == before
    assert again.versions(again.tflite_dir) == before

    other = run_pipeline(small_cifar10, tmp_path / "other", "--serving-dir",
                         str(again.serving_dir), "--tflite-dir", str(again.tflite_dir))
    assert other.process.returncode == 0, other.explain()
    view = runs.RunView(runs.open_store(str(other.metadata_path)))
    baseline = view.input(contract.EVALUATOR_NODE, "baseline_model")
    assert runs.custom_value(baseline, contract.BASELINE_VERSION_PROPERTY) == int(before[-1])
    blessing = view.output(contract.EVALUATOR_NODE, "blessing")
    assert runs.custom_value(blessing, "baseline_model") == baseline.uri  # TFX's own record
    # The baseline is a Model artifact too, newer than the Trainer's: the benchmarks' lookup
    # must not take it for the trained model.
    store = runs.open_store(str(other.metadata_path))
    assert runs.latest_trained_model(store).id == view.output(contract.TRAINER_NODE, "model").id
