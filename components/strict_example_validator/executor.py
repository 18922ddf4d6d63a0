"""Runs TFX's ExampleValidator, then fails the execution if any split has an anomaly.

TFX's ExampleValidator only records anomalies; nothing downstream reads them, so a label of 12 would
be trained on. Failing here stops Transform, training and pushing, with a message that says which
feature of which split is wrong and what to do about it.
"""
from __future__ import annotations

import os
from typing import Any

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.components.example_validator import executor as tfx_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils

from modules import contract

BASELINE_STATISTICS_KEY = "baseline_statistics"
LABEL_DRIFT_THRESHOLD_KEY = "label_drift_threshold"
DRIFT_REASON = anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH

SCHEMA_HINT = ("If the data is right and the schema is out of date, update the curated schema "
               "(pipeline/schema/schema.pbtxt); otherwise fix the input data.")


class DataValidationError(RuntimeError):
    """The examples do not match the schema; nothing after validation ran."""


def describe_anomalies(split: str, anomalies: anomalies_pb2.Anomalies) -> list[str]:
    """One readable line per anomaly: split, feature, what TFDV found."""
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        reasons = "; ".join(r.description or r.short_description for r in info.reason)
        lines.append(f"split '{split}', feature '{feature}': {info.short_description}"
                     f" ({reasons or info.description})")
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        lines.append(f"split '{split}', whole dataset: {info.short_description} "
                     f"({info.description})")
    return lines



def read_anomalies(path: str) -> anomalies_pb2.Anomalies:
    anomalies = anomalies_pb2.Anomalies()
    anomalies.ParseFromString(io_utils.read_bytes_file(path))
    return anomalies


def label_drift_problems(statistics: types.Artifact, baseline: types.Artifact, schema,
                         threshold: float) -> list[str]:
    """Splits whose label distribution moved more than `threshold` (L-infinity) since baseline."""
    import tensorflow_data_validation as tfdv
    from tfx.components.statistics_gen import stats_artifact_utils

    if baseline.uri == statistics.uri:  # StatisticsGen was a cache hit: the very same data
        return []
    drift_schema = type(schema)()
    drift_schema.CopyFrom(schema)
    label = tfdv.get_feature(drift_schema, contract.LABEL_KEY)
    label.drift_comparator.infinity_norm.threshold = threshold
    baseline_splits = set(artifact_utils.decode_split_names(baseline.split_names))
    problems = []
    for split in artifact_utils.decode_split_names(statistics.split_names):
        if split not in baseline_splits:
            continue
        anomalies = tfdv.validate_statistics(
            stats_artifact_utils.load_statistics(statistics, split).proto(), drift_schema,
            previous_statistics=stats_artifact_utils.load_statistics(baseline, split).proto())
        drift = anomalies_pb2.Anomalies()
        for feature, info in anomalies.anomaly_info.items():
            if any(reason.type == DRIFT_REASON for reason in info.reason):
                drift.anomaly_info[feature].CopyFrom(info)
        problems.extend(line + f" since the previous data ({baseline.uri})"
                        for line in describe_anomalies(split, drift))
    return problems


class Executor(tfx_executor.Executor):
    """TFX's validation, then a hard stop on anomalies."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]):
        result = super().Do(input_dict, output_dict, exec_properties)
        anomalies_artifact = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.ANOMALIES_KEY])
        problems = []
        for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
            split_uri = artifact_utils.get_split_uri([anomalies_artifact], split)
            problems.extend(describe_anomalies(split, read_anomalies(
                os.path.join(split_uri, tfx_executor.DEFAULT_FILE_NAME))))
        threshold = exec_properties.get(LABEL_DRIFT_THRESHOLD_KEY)
        baseline = input_dict.get(BASELINE_STATISTICS_KEY) or []
        if baseline and threshold:
            schema = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(
                artifact_utils.get_single_uri(input_dict[standard_component_specs.SCHEMA_KEY])))
            problems.extend(label_drift_problems(
                artifact_utils.get_single_instance(
                    input_dict[standard_component_specs.STATISTICS_KEY]),
                baseline[0], schema, float(threshold)))
        if problems:
            statistics = artifact_utils.get_single_uri(
                input_dict[standard_component_specs.STATISTICS_KEY])
            raise DataValidationError(
                "The examples failed validation, so the pipeline stopped before training:\n  "
                + "\n  ".join(problems)
                + f"\n{SCHEMA_HINT}\nStatistics: {statistics}\n"
                  f"Anomalies: {anomalies_artifact.uri}")
        return result
