"""Issue #15: the Trainer under MultiWorkerMirroredStrategy, two real worker processes.

Each worker runs TFX's own Trainer executor (GenericExecutor.Do) with its TF_CONFIG, on the
Transform output of the project's ExampleGen and Transform over a tiny real CIFAR-10 fixture.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.local_cluster.multi_worker import (
    TrainerInputs,
    build_trainer_inputs,
    kill_when_logged,
    start_cluster,
    wait,
)
from modules import contract
from tests.support.pipeline_runs import build_fixture

pytestmark = pytest.mark.e2e

SETTINGS = {"epochs": 1, "batch_size": 32, "test_time_augmentation": contract.TTA_NONE,
            "distribution_strategy": contract.STRATEGY_MULTI_WORKER}
FINGERPRINTS = re.compile(r"Weights fingerprints \(equal on every worker\): (\{.*\})")


@pytest.fixture(scope="module")
def trainer_inputs(tmp_path_factory) -> TrainerInputs:
    data_dir = build_fixture(tmp_path_factory.mktemp("mw-cifar10"), limit=50)
    return build_trainer_inputs(data_dir, tmp_path_factory.mktemp("mw-inputs"))


def _fingerprints(log: str) -> dict:
    found = FINGERPRINTS.findall(log)
    assert len(found) == 1, log[-3000:]
    return json.loads(found[0])


def test_two_workers_train_one_model_and_only_the_chief_writes(trainer_inputs, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    run = wait(start_cluster(trainer_inputs, tmp_path, custom_config=SETTINGS,
                             env={"TMPDIR": str(scratch)}), timeout_s=600)
    assert [w.returncode for w in run.workers] == [0, 0], run.explain()

    # Every step was synchronised: the same trainable weights and BatchNorm statistics.
    chief, other = (_fingerprints(w.log()) for w in run.workers)
    assert chief == other

    # The chief's export is what it trained, and it serves.
    import tensorflow as tf  # noqa: PLC0415 (the workers must not share this process' TF)

    from modules import data, export, training  # noqa: PLC0415

    keras_model, settings = export.load_keras_model(str(run.model_uri))
    assert training.weights_fingerprints(keras_model) == chief
    assert settings == {"test_time_augmentation": contract.TTA_NONE}
    served = tf.saved_model.load(str(run.model_uri / contract.SERVING_MODEL_DIR))
    test_files = [data.split_pattern(f"{trainer_inputs.examples_uri}/Split-test")]
    images = data.encoded_images(test_files, 8)
    out = served.signatures[contract.SERVING_SIGNATURE](image_bytes=tf.constant(images))
    probabilities = out[contract.PROBABILITIES_OUTPUT].numpy()
    assert probabilities.shape == (8, contract.NUM_CLASSES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)

    # Only the chief wrote the artifacts: one TensorBoard writer, its summary; nothing left over.
    summary = json.loads((run.model_run_uri / contract.TRAINING_SUMMARY_FILE).read_text())
    assert summary["replicas"] == 2 and summary["weights_fingerprints"] == chief
    event_files = sorted(run.model_run_uri.rglob("events.out.tfevents.*"))
    assert [p.parent.name for p in event_files] == ["train", "validation"], event_files
    chief_pid = str(run.workers[0].process.pid)
    assert all(p.name.split(".")[-3] == chief_pid for p in event_files), event_files
    assert list(scratch.iterdir()) == [], "a non-chief worker left its scratch output behind"


def test_a_lost_worker_fails_the_step_quickly_and_clearly(trainer_inputs, tmp_path):
    settings = {**SETTINGS, "epochs": 3, "collective_timeout_s": 20}
    run = start_cluster(trainer_inputs, tmp_path, custom_config=settings)
    try:
        killed_at = kill_when_logged(run, victim=1, marker="Training on", timeout_s=300)
        wait(run, timeout_s=240)
    finally:
        for worker in run.workers:
            worker.process.kill()
    survivor = run.workers[0]
    seconds = time.monotonic() - killed_at
    assert survivor.returncode not in (0, None, -9), run.explain()
    assert seconds < 150, f"the survivor took {seconds:.0f}s to give up\n{run.explain()}"
    assert "Multi-worker training failed: a worker of the cluster" in survivor.log(), run.explain()
    assert not (Path(run.model_uri) / contract.SERVING_MODEL_DIR).exists()
