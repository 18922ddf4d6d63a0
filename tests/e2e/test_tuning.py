"""The Tuner switched on, and a finished search reused with tuning off."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from reports import runs
from tests.support.pipeline_runs import copy_fixture, run_pipeline

pytestmark = pytest.mark.e2e

# The tuning budget is tiny: this shows the wiring, not a good search.
TUNING = ("--tune", "--tuner-trials", "2", "--tuner-epochs", "1", "--epochs", "1",
          "--accuracy-threshold", "0")


def _training_summary(store) -> dict:
    run_dir = runs.latest_artifact(store, "ModelRun").uri
    return json.loads((Path(run_dir) / "training_summary.json").read_text())


def test_tuner_searches_and_its_best_values_train_the_model(trained_pipeline, small_cifar10,
                                                             tmp_path):
    outputs = copy_fixture(trained_pipeline.output_dir, tmp_path / "outputs")
    run = run_pipeline(small_cifar10, outputs, *TUNING, "--no-tflite")
    assert run.process.returncode == 0, run.explain()
    store = runs.open_store(str(run.metadata_path))
    states = runs.run_executions(store)
    assert states["Tuner"] == ["complete"] and states["Trainer"] == ["complete"]
    assert states["Transform"] == ["cached"]

    tuner_results = runs.latest_artifact(store, "TunerResults").uri
    trials = json.loads((Path(tuner_results) / "tuner_results.json").read_text())
    assert len(trials) == 2
    best_dir = Path(runs.latest_artifact(store, "HyperParameters").uri)
    best = json.loads((best_dir / "best_hyperparameters.txt").read_text())["values"]
    assert {"base_filters", "dropout", "learning_rate"} <= set(best)
    used = _training_summary(store)["hyperparameters"]
    assert {k: used[k] for k in best} == best

    # Tuning off, the same search reused: no Tuner, the Trainer gets the imported values.
    reuse = run_pipeline(small_cifar10, outputs, "--epochs", "1", "--accuracy-threshold", "0",
                         "--no-tflite", "--hyperparameters-dir", str(best_dir))
    assert reuse.process.returncode == 0, reuse.explain()
    store = runs.open_store(str(reuse.metadata_path))
    states = runs.run_executions(store)
    assert "Tuner" not in states and "hyperparameters_importer" in states
    summary = _training_summary(store)
    assert {k: summary["hyperparameters"][k] for k in best} == best
