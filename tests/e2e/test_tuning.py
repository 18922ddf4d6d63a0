"""The Tuner in the default DAG: the defaults first, the best values trained, the search reused
while nothing it depends on changed, and imported values replacing it."""
from __future__ import annotations

import json
from pathlib import Path

import keras_tuner
import pytest

from modules import contract, training
from reports import run_report, runs
from tests.support.pipeline_runs import copy_fixture, run_pipeline

pytestmark = pytest.mark.e2e

# Another Trainer budget than the shared run's (E2E_ARGS): the search must still be a cache hit.
RETRAIN = ("--epochs", "1", "--accuracy-threshold", "0", "--no-tflite")


def _training_summary(store) -> dict:
    run_dir = runs.latest_artifact(store, "ModelRun").uri
    return json.loads((Path(run_dir) / contract.TRAINING_SUMMARY_FILE).read_text())


def _best(store) -> tuple[Path, dict]:
    best_dir = Path(runs.latest_artifact(store, "HyperParameters").uri)
    return best_dir, json.loads((best_dir / "best_hyperparameters.txt").read_text())["values"]


def test_default_run_searches_from_the_defaults_and_trains_the_best(trained_pipeline):
    store = runs.open_store(str(trained_pipeline.metadata_path))
    # The shared run's own executions: other tests run again on its outputs (cache hits).
    first_run = runs.pipeline_runs(store)[0].name
    states = runs.run_executions(store, first_run)
    assert states[contract.TUNER_NODE] == ["complete"]
    tuner_results = runs.latest_artifact(store, "TunerResults").uri
    trials = json.loads((Path(tuner_results) / "tuner_results.json").read_text())
    assert len(trials) == 2  # E2E_TUNER_ARGS
    searched = set(training.search_space(keras_tuner.HyperParameters()))
    assert any(all(t[k] == contract.DEFAULT_HPARAMS[k] for k in searched) for t in trials)
    _, best = _best(store)
    assert searched <= set(best)
    used = _training_summary(store)["hyperparameters"]
    assert {k: used[k] for k in best} == best


def test_the_search_is_reused_and_imported_values_replace_it(trained_pipeline, small_cifar10,
                                                             tmp_path):
    outputs = copy_fixture(trained_pipeline.output_dir, tmp_path / "outputs")
    rerun = run_pipeline(small_cifar10, outputs, *RETRAIN)
    assert rerun.process.returncode == 0, rerun.explain()
    store = runs.open_store(str(rerun.metadata_path))
    states = runs.run_executions(store)
    assert states[contract.TUNER_NODE] == ["cached"] and states["Trainer"] == ["complete"]
    best_dir, best = _best(store)
    summary = _training_summary(store)
    assert summary["epochs"] == 1 and {k: summary["hyperparameters"][k] for k in best} == best
    report = Path(run_report.write_report(str(outputs))["markdown"]).read_text()
    assert "The search was reused from an earlier run" in report
    assert "(defaults) |" in report

    # An earlier search imported: no Tuner, the Trainer gets the imported values.
    imported = run_pipeline(small_cifar10, outputs, *RETRAIN,
                            "--hyperparameters-dir", str(best_dir))
    assert imported.process.returncode == 0, imported.explain()
    store = runs.open_store(str(imported.metadata_path))
    states = runs.run_executions(store)
    assert contract.TUNER_NODE not in states
    assert contract.HYPERPARAMETERS_IMPORTER_NODE in states
    summary = _training_summary(store)
    assert {k: summary["hyperparameters"][k] for k in best} == best
