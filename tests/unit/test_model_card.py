"""The model card (reports.model_card) and the ServingPusher writing it beside each version."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tfx.types import standard_artifacts

from modules import contract
from reports import model_card
from serving import model_base
from tests.unit.test_serving_pusher import contents, push

SUMMARY = {"hyperparameters": {"learning_rate": 0.01, "dropout": 0.2}, "parameters": 123_456,
           "train_examples": 1350, "epochs": 4, "steps_per_epoch": 22,
           contract.TRAIN_SECONDS_KEY: 95.5,
           contract.MACHINE_KEY: {"platform": "Linux", "cpu_cores": 2, "gpus": [],
                                  "tensorflow": "2.16.2"}}


def _facts(test_examples: int = 300) -> dict:
    matrix = [[0] * contract.NUM_CLASSES for _ in range(contract.NUM_CLASSES)]
    for index in range(contract.NUM_CLASSES):
        matrix[index][index] = 20 + index  # class 0 weakest ...
        matrix[index][(index + 1) % contract.NUM_CLASSES] = 10 - index
    import numpy as np

    from reports import metrics

    per_class = metrics.per_class_metrics(np.array(matrix))
    return {
        "model_name": contract.MODEL_NAME, "version": 7, "written": "now", "model_uri": "/m",
        "saved_model_path": "/s/7", "tflite_path": None, "missing": {"tflite": "not connected"},
        "data": {"statistics_uri": "/stats", "splits": [
            {"split": "train", "examples": 1350, "label_counts": [135] * 10},
            {"split": "test", "examples": test_examples, "label_counts": None}],
            "subset_caveat": model_card.subset_caveat([
                {"split": "train", "examples": 1350},
                {"split": "test", "examples": test_examples}])},
        "evaluation": {"uri": "/eval", "split": "test", "accuracy": 0.4567, "example_count": 300,
                       "cross_entropy": 1.5, "baseline_model": "/old", "baseline_accuracy": 0.4,
                       "accuracy_change": 0.0567, "confusion_matrix": matrix,
                       "per_class": per_class, "eval_config": {}},
        "blessing": {"blessed": True, "failures": [], "rubber_stamp": False, "thresholds": [
            {"metric": "sparse_categorical_accuracy", "lower_bound": 0.15, "upper_bound": None,
             "change_absolute": -1e-10, "change_relative": None, "direction": "HIGHER"}]},
        "training": {"summary": SUMMARY, "hyperparameters": SUMMARY["hyperparameters"],
                     "hyperparameters_source": "defaults", "hyperparameters_uri": None},
        "tflite": None,
        "weak_classes": [r["class"] for r in sorted(per_class, key=lambda r: r["f1"])[:3]],
    }


def test_card_shows_the_figures_limitations_and_the_subset_caveat(tmp_path):
    facts = _facts()
    paths = model_card.write_model_card(facts, str(tmp_path / "card"))
    text = Path(paths[contract.MODEL_CARD_MARKDOWN]).read_text()
    assert "45.67%" in text and "40.00%" in text and "+5.67 points" in text
    assert "no worse than the baseline" in text
    assert "32x32" in text and all(name in text for name in contract.CLASS_NAMES)
    assert "Weakest classes" in text and facts["weak_classes"][0] in text
    assert "offline copy" in text and "5,000" in text
    assert "1 min 36 s" in text and "2 CPU core(s), no GPU" in text
    assert "_Not available: not connected._" in text  # the TFLite section says why it is empty
    html = Path(paths[contract.MODEL_CARD_HTML]).read_text()
    assert "<table>" in html and "45.67%" in html
    assert json.loads(Path(paths[contract.MODEL_CARD_JSON]).read_text()) == facts


def test_no_caveat_on_the_full_official_data_set():
    assert model_card.subset_caveat([
        {"split": "train", "examples": 45_000}, {"split": "eval", "examples": 5_000},
        {"split": "test", "examples": 10_000}]) is None


def _card_inputs(tmp_path: Path) -> dict:
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = str(tmp_path / "evaluation")  # empty: TFMA finds nothing there
    os.makedirs(evaluation.uri)
    model_run = standard_artifacts.ModelRun()
    model_run.uri = str(tmp_path / "model_run")
    os.makedirs(model_run.uri)
    (Path(model_run.uri) / contract.TRAINING_SUMMARY_FILE).write_text(json.dumps(SUMMARY))
    return {"evaluation": [evaluation], "model_run": [model_run]}


def test_pusher_publishes_the_card_beside_the_version_it_describes(tmp_path):
    serving = tmp_path / "serving"
    pushed = push(tmp_path, serving, extra_inputs=_card_inputs(tmp_path))
    (version,) = model_base.list_versions(str(serving))
    # The version folder is exactly the export; the card sits where TF Serving never looks.
    assert contents(serving / str(version)) == contents(tmp_path / "model" / "Format-Serving")
    assert sorted(os.listdir(serving)) == [str(version), contract.MODEL_CARDS_DIR]
    card = serving / contract.MODEL_CARDS_DIR / str(version)
    assert sorted(os.listdir(card)) == sorted([contract.MODEL_CARD_HTML, contract.MODEL_CARD_JSON,
                                               contract.MODEL_CARD_MARKDOWN])
    assert pushed.get_string_custom_property(contract.PUSHED_MODEL_CARD_PROPERTY) == \
        str(card / contract.MODEL_CARD_MARKDOWN)
    facts = json.loads((card / contract.MODEL_CARD_JSON).read_text())
    assert facts["version"] == version and facts["training"]["summary"] == SUMMARY
    assert "evaluation" in facts["missing"]  # an unreadable evaluation is a named gap, not a crash
    assert "Not available" in (card / contract.MODEL_CARD_MARKDOWN).read_text()


def test_a_card_that_cannot_be_published_pushes_nothing(tmp_path):
    serving = tmp_path / "serving"
    serving.mkdir()
    (serving / contract.MODEL_CARDS_DIR).write_text("a file where the cards folder goes")
    with pytest.raises(model_base.ModelBaseError):
        push(tmp_path, serving, extra_inputs=_card_inputs(tmp_path))
    assert model_base.list_versions(str(serving)) == []
