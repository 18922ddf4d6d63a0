"""The Tuner is in the default DAG; --no-tune and imported hyperparameters take it out."""
from __future__ import annotations

import dataclasses

import pytest

from cli import main as cli_main
from modules import contract
from pipeline import configs, pipeline


def _nodes(config: configs.PipelineConfig) -> dict:
    return {c.id: c for c in pipeline.create_pipeline(config).components}


@pytest.fixture
def config(tmp_path) -> configs.PipelineConfig:
    return configs.PipelineConfig(output_dir=str(tmp_path / "out"), data_root=str(tmp_path))


def test_default_dag_tunes_and_the_trainer_takes_the_best_values(config):
    nodes = _nodes(config)
    assert contract.TUNER_NODE in nodes
    trainer = nodes[contract.TRAINER_NODE]
    assert trainer.inputs["hyperparameters"].producer_component_id == contract.TUNER_NODE


def test_no_tune_and_imported_values_leave_the_tuner_out(config, tmp_path):
    assert contract.TUNER_NODE not in _nodes(dataclasses.replace(config, enable_tuning=False))
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / contract.BEST_HYPERPARAMETERS_FILE).write_text("{}")
    imported = _nodes(dataclasses.replace(config, hyperparameters_dir=str(tmp_path / "best")))
    assert contract.TUNER_NODE not in imported
    assert contract.HYPERPARAMETERS_IMPORTER_NODE in imported


def test_the_search_depends_only_on_what_changes_its_result(config):
    """Other Trainer settings leave a finished search a cache hit."""
    def tuner_config(**changes) -> str:
        nodes = _nodes(dataclasses.replace(config, **changes))
        return nodes[contract.TUNER_NODE].exec_properties["custom_config"]

    assert tuner_config(epochs=3, test_time_augmentation=contract.TTA_NONE,
                        accuracy_threshold=0.5) == tuner_config()
    assert tuner_config(tuner_trials=9) != tuner_config()
    assert tuner_config(tuner_train_fraction=0.5) != tuner_config()


def test_a_bad_tuner_budget_is_refused_under_its_flag(tmp_path, capsys):
    assert cli_main.main(["run", "--data-dir", str(tmp_path), "--output-dir",
                          str(tmp_path / "out"), "--tuner-train-fraction", "0"]) == 2
    error = capsys.readouterr().err
    assert "--tuner-train-fraction 0: tuner_train_fraction must be within (0, 1]" in error
    assert not (tmp_path / "out").exists()
