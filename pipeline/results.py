"""Reads what a pipeline run produced back out of ML Metadata: the push, the blessing, the metrics."""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2


@dataclasses.dataclass
class RunOutcome:
    blessed: Optional[bool]
    pushed: bool
    pushed_version: Optional[int]
    serving_path: Optional[str]
    tflite_path: Optional[str]
    test_accuracy: Optional[float]
    evaluation_uri: Optional[str]


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
    if not os.path.exists(metadata_path):
        raise FileNotFoundError(f"No ML Metadata database at {metadata_path}; run the pipeline first.")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


STATE_NAMES = {
    metadata_store_pb2.Execution.COMPLETE: "complete",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.NEW: "new",
    metadata_store_pb2.Execution.CANCELED: "canceled",
}


def node_id(execution, store) -> str:
    """The pipeline node an execution belongs to (its `node` context is '<pipeline>.<node>')."""
    for context in store.get_contexts_by_execution(execution.id):
        if store.get_context_types_by_id([context.type_id])[0].name == "node":
            return context.name.split(".", 1)[1]
    return "?"


def run_executions(store, run_id: Optional[str] = None) -> dict:
    """node id -> list of execution states (oldest first) in one pipeline run (default: latest)."""
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return {}
    run = (max(runs, key=lambda c: c.id) if run_id is None
           else next(c for c in runs if c.name == run_id))
    states: dict = {}
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        states.setdefault(node_id(execution, store), []).append(
            STATE_NAMES.get(execution.last_known_state, str(execution.last_known_state)))
    return states


def training_run_spans(store) -> dict:
    """node id -> (start, end) seconds of the pipeline run that last trained a model.

    Later runs that hit the cache take seconds; the run in which the Trainer did the work is the
    one whose wall times say what the pipeline costs.
    """
    trainings = [e for e in store.get_executions()
                 if e.last_known_state == metadata_store_pb2.Execution.COMPLETE
                 and node_id(e, store) == "Trainer"]
    if not trainings:
        return {}
    latest = max(trainings, key=lambda e: e.id)
    run = next(c for c in store.get_contexts_by_execution(latest.id)
               if store.get_context_types_by_id([c.type_id])[0].name == "pipeline_run")
    return {node_id(e, store): (e.create_time_since_epoch / 1000.0,
                                e.last_update_time_since_epoch / 1000.0)
            for e in store.get_executions_by_context(run.id)
            if e.last_known_state == metadata_store_pb2.Execution.COMPLETE}


def latest_artifact(store, type_name: str):
    artifacts = store.get_artifacts_by_type(type_name)
    live = [a for a in artifacts if a.state == metadata_store_pb2.Artifact.LIVE]
    return max(live, key=lambda a: a.id) if live else None


def _custom_int(artifact, key: str) -> Optional[int]:
    value = artifact.custom_properties.get(key)
    return None if value is None else int(value.int_value)


def _custom_str(artifact, key: str) -> Optional[str]:
    value = artifact.custom_properties.get(key)
    return None if value is None else value.string_value


def test_accuracy(evaluation_uri: str) -> Optional[float]:
    """Overall accuracy from a TFMA Evaluator output folder."""
    import tensorflow_model_analysis as tfma

    result = tfma.load_eval_result(evaluation_uri)
    for slice_key, metrics in result.slicing_metrics:
        if slice_key == ():
            for output in metrics.values():
                for sub in output.values():
                    value = sub.get("sparse_categorical_accuracy")
                    if value is not None:
                        return float(value.get("doubleValue", 0.0))
    return None


def latest_outcome(metadata_path: str) -> RunOutcome:
    """The newest blessing, push and evaluation recorded in the store."""
    store = open_store(metadata_path)
    blessing = latest_artifact(store, "ModelBlessing")
    pushed = latest_artifact(store, "PushedModel")
    evaluation = latest_artifact(store, "ModelEvaluation")
    was_pushed = bool(pushed and _custom_int(pushed, "pushed"))
    return RunOutcome(
        blessed=None if blessing is None else bool(_custom_int(blessing, "blessed")),
        pushed=was_pushed,
        pushed_version=_custom_int(pushed, "pushed_version") if was_pushed else None,
        serving_path=_custom_str(pushed, "pushed_destination") if was_pushed else None,
        tflite_path=_custom_str(pushed, "pushed_tflite_destination") if was_pushed else None,
        test_accuracy=test_accuracy(evaluation.uri) if evaluation else None,
        evaluation_uri=evaluation.uri if evaluation else None,
    )


# ---- Reading one run back, for the run report (pipeline/report.py) -------------------------------

INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


class UnknownRunError(LookupError):
    """No pipeline run with that id (or no run at all) in the store."""


def pipeline_runs(store) -> list:
    """The `pipeline_run` contexts, oldest first; their names are the run ids."""
    return sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id)


def find_run(store, run_id: Optional[str] = None):
    """The named run's context, or the latest one; UnknownRunError says which ids exist."""
    runs = pipeline_runs(store)
    if not runs:
        raise UnknownRunError("the ML Metadata store holds no pipeline run yet")
    if run_id is None:
        return runs[-1]
    for run in runs:
        if run.name == run_id:
            return run
    known = ", ".join(r.name for r in runs[-5:])
    raise UnknownRunError(f"no pipeline run {run_id!r} in the ML Metadata store "
                          f"(latest runs: {known})")


def run_execution_list(store, run_id: Optional[str] = None) -> list:
    """(node id, execution) of one run (default: latest), in the order they started."""
    run = find_run(store, run_id)
    executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
    return [(node_id(e, store), e) for e in executions]


def pipeline_nodes(store) -> list:
    """Every node id the store has seen in any run (its `node` contexts), in creation order."""
    nodes = sorted(store.get_contexts_by_type("node"), key=lambda c: c.id)
    return [c.name.split(".", 1)[1] for c in nodes]


def execution_artifacts(store, execution_id: int) -> dict:
    """{"inputs": {key: [artifact]}, "outputs": {key: [artifact]}} of one execution."""
    events = store.get_events_by_execution_ids([execution_id])
    by_id = {a.id: a for a in store.get_artifacts_by_id(list({e.artifact_id for e in events}))}
    found: dict = {"inputs": {}, "outputs": {}}
    for event in sorted(events, key=lambda e: e.artifact_id):
        side = ("inputs" if event.type in INPUT_EVENTS else
                "outputs" if event.type in OUTPUT_EVENTS else None)
        if side is None or event.artifact_id not in by_id:
            continue
        key = event.path.steps[0].key if event.path.steps else "?"
        found[side].setdefault(key, []).append(by_id[event.artifact_id])
    return found


def producing_execution(store, artifact_id: int):
    """The execution that made an artifact (not the cache hits that reused it later)."""
    events = [e for e in store.get_events_by_artifact_ids([artifact_id]) if e.type in OUTPUT_EVENTS]
    if not events:
        return None
    return store.get_executions_by_id([min(e.execution_id for e in events)])[0]


def custom_value(entity, key: str):
    """A custom property of an artifact or execution as a plain Python value (None if absent)."""
    if key not in entity.custom_properties:
        return None
    value = entity.custom_properties[key]
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)
