"""Sections of the run report built from artifact files, without a pipeline run."""
from __future__ import annotations

import pytest

from reports import document, run_report


def test_tuning_trials_table():
    trials = [{"trial_id": "03", "score": 0.61234, "learning_rate": 0.1, "dropout": 0.2},
              {"trial_id": "01", "score": 0.5, "learning_rate": 0.05, "dropout": 0.0}]
    header, rows = run_report.trials_table(trials)
    assert header == ["Trial", "Score", "dropout", "learning_rate"]
    assert rows[0] == ["03", "0.6123", "0.2", "0.1"]


class _Artifact:
    def __init__(self, uri):
        self.uri = str(uri)


class _StubRun:
    """Stands in for run_report.RunView: outputs by (node, key)."""

    def __init__(self, outputs: dict):
        self.outputs = outputs

    def execution(self, node):
        from ml_metadata.proto import metadata_store_pb2

        return metadata_store_pb2.Execution() if any(n == node for n, _ in self.outputs) \
            else None

    def output(self, node, key):
        return self.outputs.get((node, key))


def test_tuner_section_shows_the_trials_and_the_best_values(tmp_path):
    import json

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "tuner_results.json").write_text(json.dumps(
        [{"trial_id": "2", "score": 0.55, "dropout": 0.1, "learning_rate": 0.2},
         {"trial_id": "0", "score": 0.41, "dropout": 0.3, "learning_rate": 0.05}]))
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "best_hyperparameters.txt").write_text(json.dumps(
        {"space": [], "values": {"dropout": 0.1, "learning_rate": 0.2}}))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "training_summary.json").write_text(json.dumps(
        {"hyperparameters": {"dropout": 0.1, "learning_rate": 0.2}, "parameters": 1234,
         "epochs": 3, "steps_per_epoch": 10, "train_examples": 640}))
    view = _StubRun({("Tuner", "tuner_results"): _Artifact(tmp_path / "results"),
                     ("Tuner", "best_hyperparameters"): _Artifact(tmp_path / "best"),
                     ("Trainer", "model_run"): _Artifact(tmp_path / "run")})
    doc = document.Document()
    run_report.section_hyperparameters(doc, view)
    markdown = document.to_markdown(doc)
    assert "The Tuner ran (2 completed trial(s)" in markdown
    reused = document.Document()  # a cache hit: not "ran", and said so
    run_report.section_hyperparameters(reused, view, [{"node": "Tuner", "state": "cached",
                                                       "seconds": 0.1}])
    assert "The search came from an earlier run (2 completed trial(s)" in \
        document.to_markdown(reused)
    assert "| 2 | 0.5500 | 0.1 | 0.2 |" in markdown and "| 0 | 0.4100 | 0.3 | 0.05 |" in markdown
    assert "Best hyperparameters found:" in markdown
    assert "1,234 parameters, 3 epoch(s) of 10 steps on 640 train examples" in markdown


def test_thresholds_are_read_from_either_json_spelling():
    snake = {"metrics_specs": [{"metrics": [{"class_name": "SparseCategoricalAccuracy",
                                             "threshold": {
                                                 "value_threshold": {"lower_bound": 0.8},
                                                 "change_threshold": {
                                                     "absolute": -1e-10,
                                                     "direction": "HIGHER_IS_BETTER"}}}]}]}
    camel = {"metricsSpecs": [{"metrics": [{
        "className": "SparseCategoricalAccuracy",
        "threshold": {"valueThreshold": {"lowerBound": 0.8}}}]}]}
    (configured,) = run_report.thresholds_from_config(snake)
    assert configured["metric"] == "sparse_categorical_accuracy"
    assert configured["lower_bound"] == pytest.approx(0.8)
    assert run_report._change_rule(configured) == "no worse than the baseline"
    (applied,) = run_report.thresholds_from_config(camel)
    assert applied["change_absolute"] is None and run_report._change_rule(applied) == "-"


def test_trials_table_marks_the_trial_that_trained_the_defaults():
    from modules import contract

    trials = [{"trial_id": "1", "score": 0.7, **contract.DEFAULT_HPARAMS, "dropout": 0.1},
              {"trial_id": "0", "score": 0.6, **contract.DEFAULT_HPARAMS}]
    _, rows = run_report.trials_table(trials)
    assert [row[0] for row in rows] == ["1", "0 (defaults)"]
