"""A small record file instead of a resolver: which statistics the last validated run had.

RecordStatistics writes `{"uri", "split_names"}` of this run's statistics once the validator
passed; the next run's PreviousStatistics copies them into its own ExampleStatistics artifact.
On a first run (no record, or its statistics gone) the artifact is empty and has no splits, which
the validator's drift check skips.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils, standard_component_specs

from modules import contract
from serving import model_base

log = logging.getLogger("cifar10_tfx.previous_statistics")

RECORD_DIR_KEY = "record_dir"
STATISTICS_KEY = standard_component_specs.STATISTICS_KEY


def record_path(record_dir: str) -> str:
    fs = model_base.filesystem_for(record_dir)
    return fs.join(record_dir, contract.STATISTICS_RECORD_FILE)


def read_record(record_dir: str) -> dict[str, str] | None:
    """The recorded statistics, or None when there is no record or its folder is gone."""
    path = record_path(record_dir)
    fs = model_base.filesystem_for(path)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        record = json.loads(f.read().decode())
    if not model_base.filesystem_for(record["uri"]).isdir(record["uri"]):
        log.warning("The recorded statistics %s are gone; no drift check this run.",
                    record["uri"])
        return None
    return record


def write_record(record_dir: str, statistics: types.Artifact) -> str:
    """Replaces the record (write then rename where the file system can)."""
    fs = model_base.filesystem_for(record_dir)
    fs.makedirs(record_dir)
    path = record_path(record_dir)
    staging = fs.join(record_dir, contract.STAGING_PREFIX + contract.STATISTICS_RECORD_FILE)
    with fs.open(staging, "wb") as f:
        f.write(json.dumps({"uri": statistics.uri,
                            "split_names": statistics.split_names}).encode())
    if fs.exists(path):
        fs.remove(path)
    fs.rename(staging, path)
    return path


class PreviousExecutor(base_executor.BaseExecutor):
    """Copies the recorded statistics (a few small files) into the output artifact."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        output = artifact_utils.get_single_instance(output_dict[STATISTICS_KEY])
        output.split_names = artifact_utils.encode_split_names([])
        record = read_record(exec_properties[RECORD_DIR_KEY])
        if record is None:
            log.info("No validated statistics recorded yet: no drift check this run.")
            return
        model_base.copy_tree(model_base.filesystem_for(record["uri"]), record["uri"],
                             model_base.filesystem_for(output.uri), output.uri)
        output.split_names = record["split_names"]
        log.info("Previous statistics: %s", record["uri"])


class RecordExecutor(base_executor.BaseExecutor):
    """Records this run's statistics; runs after the validator, so only validated data counts."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        statistics = artifact_utils.get_single_instance(input_dict[STATISTICS_KEY])
        path = write_record(exec_properties[RECORD_DIR_KEY], statistics)
        log.info("Recorded %s in %s.", statistics.uri, path)
