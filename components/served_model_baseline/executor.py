"""Copies the newest served SavedModel into a Model artifact: the no-regression baseline.

KFP 2.x cannot run resolver tasks, and Vertex AI's resolver queries see every pipeline of a
metadata store; the model being served is what a new model must not be worse than anyway.
"""
from __future__ import annotations

import logging
from typing import Any

from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils, standard_component_specs

from modules import contract, export
from serving import model_base

log = logging.getLogger("cifar10_tfx.served_model_baseline")

SERVING_DIR_KEY = "serving_dir"
MODEL_KEY = "model"


def has_model(model: types.Artifact) -> bool:
    """False for a baseline artifact of a first run: it holds no SavedModel."""
    fs = model_base.filesystem_for(model.uri)
    return fs.exists(fs.join(export.serving_model_dir(model.uri), contract.SAVED_MODEL_FILE))


class Executor(base_executor.BaseExecutor):
    """Leaves the artifact empty (no `served_version`) when nothing is served yet."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        model = artifact_utils.get_single_instance(output_dict[MODEL_KEY])
        serving_dir = exec_properties[SERVING_DIR_KEY]
        version = model_base.served_version(serving_dir)
        if version is None:
            log.info("Nothing is served in %s yet: the Evaluator gets no baseline.", serving_dir)
            return
        source_fs = model_base.filesystem_for(serving_dir)
        source = source_fs.join(serving_dir, str(version))
        copied = model_base.copy_tree(source_fs, source, model_base.filesystem_for(model.uri),
                                      export.serving_model_dir(model.uri),
                                      last=contract.SAVED_MODEL_FILE)
        model.set_int_custom_property(contract.BASELINE_VERSION_PROPERTY, version)
        log.info("Baseline: served version %d (%s, %d files).", version, source, copied)


class EvaluatorExecutor(evaluator_executor.Executor):
    """TFX's Evaluator, where a baseline artifact holding no model means no baseline.

    On a container orchestrator an upstream output artifact always exists, so a first run's empty
    baseline arrives as an artifact; TFX's Evaluator then skips change thresholds only when the
    baseline input is absent (rubber stamp), which is what this restores.
    """

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        key = standard_component_specs.BASELINE_MODEL_KEY
        baseline = input_dict.get(key) or []
        if baseline and not has_model(baseline[0]):
            log.info("The baseline %s holds no model (nothing served yet): evaluating without "
                     "one, so change thresholds are skipped.", baseline[0].uri)
            input_dict = {k: v for k, v in input_dict.items() if k != key}
        return super().Do(input_dict, output_dict, exec_properties)
