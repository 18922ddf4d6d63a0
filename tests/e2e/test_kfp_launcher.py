"""The compiled specs, executed task by task as the KFP launcher does (tests/support/kfp_launcher).

Both targets run through the Pusher, and the batch stage (--predict-dir) after it, on a small
fixture in an image-like copy of the project:
first the kfp spec, then the vertex one, compiled with the same settings and locations. They must
be the same PipelineSpec, so the vertex run is also the kfp spec's second run (one run fewer): it
must evaluate against the version the first run pushed and check drift against its statistics.
This is what catches specs a KFP 2.x cluster refuses (resolver tasks) and steps that fail only in
the container (a custom artifact type that does not import there, a file the image lacks).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cli import kubeflow
from modules import contract
from tests.support.kfp_launcher import Launcher, TaskRun, image_context
from tests.support.pipeline_runs import PROJECT_DIR, build_fixture

pytestmark = pytest.mark.e2e

# Tiny but complete: one epoch, no accuracy floor, any regression against the baseline (a model
# trained one epoch is better or worse by chance; the baseline is still evaluated), any TFLite
# drop, Beam in-process, a one-trial search (the Tuner is in the default DAG).
TINY = ("--epochs", "1", "--batch-size", "64", "--accuracy-threshold", "0",
        "--max-accuracy-regression", "1.0",
        "--tflite-max-accuracy-drop", "1.0", "--tflite-calibration-samples", "32",
        "--beam-workers", "1", "--test-time-augmentation", "none",
        "--tuner-trials", "1", "--tuner-epochs", "1")


PREDICT_IMAGES = 3


def predict_folder(folder: Path) -> Path:
    """A few PNGs for the batch stage."""
    folder.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (PREDICT_IMAGES, 32, 32, 3), np.uint8)
    for index, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{index}.png")
    return folder


def compile_both(base: Path, data: Path, image: Path) -> dict[str, Path]:
    """Both targets, same settings and locations; returns target -> spec file."""
    common = ["--pipeline-root", str(base / "pipeline_root"), "--data-root", str(data),
              "--predict-dir", str(predict_folder(base / "predict")),
              "--serving-dir", str(base / "serving"), "--tflite-dir", str(base / "tflite"),
              "--image", "cifar10-tfx:dev",
              "--schema-file", str(image / "pipeline" / "schema" / "schema.pbtxt"), *TINY]
    specs = {}
    for target in contract.COMPILE_TARGETS:
        output = base / f"{target}.json"
        code = kubeflow.main([*common, "--target", target, "--output", str(output),
                              "--kfp-output", str(output.with_suffix(".yaml"))], environ={})
        assert code == 0
        specs[target] = output.with_suffix(".yaml") if target == contract.TARGET_KFP \
            else output
    assert not (base / "kfp.json").exists()  # kfp: the PipelineSpec YAML alone
    return specs


def run(spec: Path, base: Path, image: Path, pre_cache_check: bool) -> dict[str, TaskRun]:
    launcher = Launcher(spec, base / "pipeline_root", image, pre_cache_check=pre_cache_check)
    try:
        return launcher.run()
    finally:
        print(f"{spec.name}: " + ", ".join(f"{name} {task.seconds:.0f}s"
                                            for name, task in launcher.tasks.items()))


def versions(base: Path) -> list[int]:
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit()) if base.exists() \
        else []


def pushed_version(tasks: dict[str, TaskRun]) -> int:
    pushed = tasks[contract.PUSHER_NODE].outputs["pushed_model"][0]["metadata"]
    assert pushed.get(contract.PUSHED_PROPERTY) == 1, pushed
    return int(pushed[contract.PUSHED_VERSION_PROPERTY])


def baseline_of(tasks: dict[str, TaskRun]) -> dict:
    """The baseline Model artifact the Evaluator was given."""
    inputs = tasks[contract.EVALUATOR_NODE].executor_input["inputs"]["artifacts"]
    return inputs["baseline_model"]["artifacts"][0]


def check_pushed(tasks: dict[str, TaskRun], base: Path) -> int:
    version = pushed_version(tasks)
    assert (base / "serving" / str(version) / contract.SAVED_MODEL_FILE).exists()
    assert (base / "tflite" / str(version) / contract.TFLITE_FILE).exists()
    (written,) = tasks[contract.BATCH_PREDICTIONS_NODE].outputs["predictions"]
    assert written["metadata"][contract.PREDICTIONS_COUNT_PROPERTY] == PREDICT_IMAGES
    rows = (Path(written["uri"]) / contract.PREDICTIONS_CSV).read_text().splitlines()
    assert len(rows) == 1 + PREDICT_IMAGES  # a header and one row per image
    return version


def test_both_targets_run_through_the_pusher_the_second_against_the_first(tmp_path):
    data = build_fixture(tmp_path / "data", limit=100)
    image = image_context(PROJECT_DIR, tmp_path / "image")
    specs = compile_both(tmp_path, data, image)
    job = json.loads(specs[contract.TARGET_VERTEX].read_text())
    kfp_spec = yaml.safe_load(specs[contract.TARGET_KFP].read_text())
    assert kfp_spec.pop("defaultPipelineRoot") == job["runtimeConfig"]["gcsOutputDirectory"]
    # The vertex run below is the kfp spec's second run: the same spec, but for the kfp target's
    # ExampleGens, which run every time there (KFP never runs their preCacheCheck hook).
    for spec in (kfp_spec, job["pipelineSpec"]):
        for name in (contract.EXAMPLE_GEN_NODE, contract.IMAGE_FOLDER_EXAMPLE_GEN_NODE):
            task = spec["root"]["dag"]["tasks"].pop(name)
            spec["components"].pop(task["componentRef"]["name"])
    assert kfp_spec == job["pipelineSpec"]

    first = run(specs[contract.TARGET_KFP], tmp_path, image, pre_cache_check=False)
    assert baseline_of(first)["metadata"].get(contract.BASELINE_VERSION_PROPERTY) is None
    version = check_pushed(first, tmp_path)
    assert versions(tmp_path / "serving") == [version]
    record = tmp_path / "pipeline_root" / contract.RUN_RECORDS_DIR / contract.PIPELINE_NAME / \
        contract.STATISTICS_RECORD_FILE
    assert json.loads(record.read_text())["uri"] == \
        first[contract.STATISTICS_GEN_NODE].outputs["statistics"][0]["uri"]

    second = run(specs[contract.TARGET_VERTEX], tmp_path, image, pre_cache_check=True)
    baseline = baseline_of(second)
    assert baseline["metadata"][contract.BASELINE_VERSION_PROPERTY] == version
    assert (Path(baseline["uri"]) / contract.SERVING_MODEL_DIR / contract.SAVED_MODEL_FILE
            ).exists()
    blessing = second[contract.EVALUATOR_NODE].outputs["blessing"][0]["metadata"]
    assert blessing["baseline_model"] == baseline["uri"]  # TFX's own record of the baseline
    previous = second[contract.PREVIOUS_STATISTICS_NODE].outputs["statistics"][0]["metadata"]
    assert json.loads(previous["split_names"])  # the drift check had the first run's splits
    second_version = check_pushed(second, tmp_path)
    if second[contract.PUSHER_NODE].outputs["pushed_model"][0]["metadata"].get(
            contract.ALREADY_SERVED_PROPERTY):
        # The same seed and data can train the same bytes: then nothing new is published.
        assert second_version == version and versions(tmp_path / "serving") == [version]
    else:
        assert versions(tmp_path / "serving") == [version, second_version]
