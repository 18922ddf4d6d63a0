"""Reads a pipeline run back out of ML Metadata: its executions, their artifacts, the push."""
from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Collection, Sequence

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from modules import contract
from reports import metrics

STATE_NAMES = {
    metadata_store_pb2.Execution.COMPLETE: "complete",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.NEW: "new",
    metadata_store_pb2.Execution.CANCELED: "canceled",
}
INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
PIPELINE_RUN_CONTEXT = "pipeline_run"  # TFX's context type: one per run, named by the run id
NODE_CONTEXT = "node"  # TFX's context type: one per node, named '<pipeline>.<node id>'


@dataclasses.dataclass
class RunOutcome:
    """The newest verdict, push and evaluation in a store: what a run ends by printing."""

    blessed: bool | None
    pushed: bool
    pushed_version: int | None
    serving_path: str | None
    tflite_path: str | None
    test_accuracy: float | None
    evaluation_uri: str | None
    already_served: bool = False  # pushed: the model was already the newest version
    # not pushed: this version was served by then, not the baseline the model was evaluated
    # against; `superseded_cause` says why (another run pushed, or the baseline went)
    superseded_by: int | None = None
    superseded_cause: str | None = None


class UnknownRunError(LookupError):
    """No pipeline run with that id (or no run at all) in the store."""


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
    """A read-only connection, so reading a report never changes the store."""
    if not os.path.exists(metadata_path):
        raise FileNotFoundError(f"No ML Metadata database at {metadata_path}; "
                                f"run the pipeline first.")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    try:
        return metadata_store.MetadataStore(config)
    except RuntimeError as error:
        # No tables yet (a zero-byte file, or SQLite that was never given any): ML Metadata
        # would create them, which a read-only connection cannot. A new store, not a bad one.
        if "readonly database" not in str(error) or "CREATE TABLE" not in str(error):
            raise
    raise FileNotFoundError(f"No pipeline run in {metadata_path} yet (an empty ML Metadata "
                            f"database); run the pipeline first.")


def writable_store(metadata_path: str) -> metadata_store.MetadataStore:
    """A read-write connection to an existing store (never creates one)."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE
    return metadata_store.MetadataStore(config)


def record_run_nodes(metadata_path: str, run_ids: Collection[str], nodes: Sequence[str]) -> None:
    """Records the DAG's node ids on each of these runs' contexts (RUN_NODES_PROPERTY)."""
    store = writable_store(metadata_path)
    contexts = [run for run in pipeline_runs(store) if run.name in run_ids]
    for context in contexts:
        context.custom_properties[contract.RUN_NODES_PROPERTY].string_value = ",".join(nodes)
    if contexts:
        store.put_contexts(contexts)


def custom_value(entity, key: str):
    """A custom property of an artifact or execution as a plain Python value (None if absent)."""
    if key not in entity.custom_properties:
        return None
    value = entity.custom_properties[key]
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


def superseded_cause(pushed) -> str | None:
    """Why a Pusher's output pushed nothing because the served version was no longer its
    baseline (contract.superseded_cause); None when that is not why."""
    newer = custom_value(pushed, contract.SUPERSEDED_BY_PROPERTY)
    if not newer:
        return None
    return contract.superseded_cause(newer,
                                     custom_value(pushed, contract.BASELINE_VERSION_PROPERTY))


def node_id(execution, store) -> str:
    """The pipeline node an execution belongs to (its `node` context is '<pipeline>.<node>')."""
    for context in store.get_contexts_by_execution(execution.id):
        if store.get_context_types_by_id([context.type_id])[0].name == NODE_CONTEXT:
            return context.name.split(".", 1)[1]
    return "?"


def state_name(execution) -> str:
    """complete, cached, failed, running, new or canceled."""
    return STATE_NAMES.get(execution.last_known_state, str(execution.last_known_state))


def pipeline_runs(store) -> list:
    """The `pipeline_run` contexts, oldest first; their names are the run ids."""
    return sorted(store.get_contexts_by_type(PIPELINE_RUN_CONTEXT), key=lambda c: c.id)


def find_run(store, run_id: str | None = None):
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


def run_executions(store, run_id: str | None = None) -> dict:
    """node id -> list of execution states (oldest first) in one pipeline run (default: latest)."""
    runs = pipeline_runs(store)
    if not runs:
        return {}
    run = runs[-1] if run_id is None else next(c for c in runs if c.name == run_id)
    states: dict = {}
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        states.setdefault(node_id(execution, store), []).append(state_name(execution))
    return states


def run_execution_list(store, run_id: str | None = None) -> list:
    """(node id, execution) of one run (default: latest), in the order they started."""
    run = find_run(store, run_id)
    executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
    return [(node_id(e, store), e) for e in executions]


def pipeline_nodes(store, run=None) -> list:
    """The node ids of a run's DAG as the run recorded them (RUN_NODES_PROPERTY); without a
    record (a run killed outright, or not started by `cifar10-tfx run`), every node the store
    has seen in any run (its `node` contexts), in creation order."""
    recorded = custom_value(run, contract.RUN_NODES_PROPERTY) if run is not None else None
    if recorded:
        return recorded.split(",")
    nodes = sorted(store.get_contexts_by_type(NODE_CONTEXT), key=lambda c: c.id)
    return [c.name.split(".", 1)[1] for c in nodes]


def training_run_spans(store) -> dict:
    """node id -> (start, end) seconds of the pipeline run that last trained a model.

    Later runs that hit the cache take seconds; the run in which the Trainer did the work is the
    one whose wall times say what the pipeline costs.
    """
    trainings = [e for e in store.get_executions()
                 if e.last_known_state == metadata_store_pb2.Execution.COMPLETE
                 and node_id(e, store) == contract.TRAINER_NODE]
    if not trainings:
        return {}
    latest = max(trainings, key=lambda e: e.id)
    run = next(c for c in store.get_contexts_by_execution(latest.id)
               if store.get_context_types_by_id([c.type_id])[0].name == PIPELINE_RUN_CONTEXT)
    return {node_id(e, store): (e.create_time_since_epoch / 1000.0,
                                e.last_update_time_since_epoch / 1000.0)
            for e in store.get_executions_by_context(run.id)
            if e.last_known_state == metadata_store_pb2.Execution.COMPLETE}


def run_output_ids(store, run_id: str) -> set[int]:
    """Ids of the artifacts the executions of one run output (cache hits included)."""
    executions = store.get_executions_by_context(find_run(store, run_id).id)
    if not executions:
        return set()
    events = store.get_events_by_execution_ids([e.id for e in executions])
    return {e.artifact_id for e in events if e.type in OUTPUT_EVENTS}


def latest_artifact(store, type_name: str, among: set[int] | None = None):
    """The newest LIVE artifact of a type (None if there is none); `among`: only those ids."""
    artifacts = store.get_artifacts_by_type(type_name)
    if among is not None:
        artifacts = [a for a in artifacts if a.id in among]
    live = [a for a in artifacts if a.state == metadata_store_pb2.Artifact.LIVE]
    return max(live, key=lambda a: a.id) if live else None


def latest_trained_model(store):
    """The newest LIVE Model a Trainer output (None if none): ServedModelBaseline outputs Models
    too, copies of the served SavedModel without the Keras model or the training summary."""
    trainings = [e.id for e in store.get_executions()
                 if node_id(e, store) == contract.TRAINER_NODE]
    if not trainings:
        return None
    events = store.get_events_by_execution_ids(trainings)
    return latest_artifact(store, "Model",
                           {e.artifact_id for e in events if e.type in OUTPUT_EVENTS})


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
    events = [e for e in store.get_events_by_artifact_ids([artifact_id])
              if e.type in OUTPUT_EVENTS]
    if not events:
        return None
    return store.get_executions_by_id([min(e.execution_id for e in events)])[0]


def latest_outcome(metadata_path: str, run_id: str | None = None) -> RunOutcome:
    """The newest blessing, push and evaluation in the store; with run_id, that run's own
    (another run on the same store may have written newer ones: issue #16)."""
    store = open_store(metadata_path)
    among = None if run_id is None else run_output_ids(store, run_id)
    blessing = latest_artifact(store, "ModelBlessing", among)
    pushed = latest_artifact(store, "PushedModel", among)
    evaluation = latest_artifact(store, "ModelEvaluation", among)
    was_pushed = bool(pushed and custom_value(pushed, contract.PUSHED_PROPERTY))

    def pushed_value(key: str):
        return custom_value(pushed, key) if was_pushed else None

    return RunOutcome(
        blessed=(None if blessing is None
                 else bool(custom_value(blessing, contract.BLESSED_PROPERTY))),
        pushed=was_pushed,
        pushed_version=pushed_value(contract.PUSHED_VERSION_PROPERTY),
        serving_path=pushed_value(contract.PUSHED_DESTINATION_PROPERTY),
        tflite_path=pushed_value(contract.PUSHED_TFLITE_DESTINATION_PROPERTY),
        test_accuracy=metrics.evaluation_accuracy(evaluation.uri) if evaluation else None,
        evaluation_uri=evaluation.uri if evaluation else None,
        already_served=bool(pushed_value(contract.ALREADY_SERVED_PROPERTY)),
        superseded_by=(custom_value(pushed, contract.SUPERSEDED_BY_PROPERTY)
                       if pushed is not None else None),
        superseded_cause=superseded_cause(pushed) if pushed is not None else None,
    )


class RunView:
    """One pipeline run in the store: its executions by node and their input/output artifacts."""

    def __init__(self, store, run_id: str | None = None):
        self.store = store
        self.run = find_run(store, run_id)
        self.executions = run_execution_list(store, self.run.name)
        self._io: dict = {}

    def execution(self, node: str):
        """The last execution of a node in this run (None if the node did not run)."""
        found = [e for n, e in self.executions if n == node]
        return found[-1] if found else None

    def io(self, execution) -> dict:
        if execution.id not in self._io:
            self._io[execution.id] = execution_artifacts(self.store, execution.id)
        return self._io[execution.id]

    def output(self, node: str, key: str):
        """The first artifact a node's execution in this run wrote under key (or None)."""
        return self._artifact(node, "outputs", key)

    def input(self, node: str, key: str):
        """The first artifact a node's execution in this run read under key (or None)."""
        return self._artifact(node, "inputs", key)

    @functools.cached_property
    def missing_artifacts(self) -> tuple[list[str], int]:
        """(local folders of this run's finished outputs that are gone, how many there are):
        ML Metadata records absolute paths, so a moved or cleaned output dir leaves a store
        whose figures cannot be read any more."""
        finished = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
        uris = sorted({artifact.uri for _, execution in self.executions
                       if execution.last_known_state in finished
                       for artifacts in self.io(execution)["outputs"].values()
                       for artifact in artifacts if artifact.uri and "://" not in artifact.uri})
        return [uri for uri in uris if not os.path.exists(uri)], len(uris)

    def _artifact(self, node: str, side: str, key: str):
        execution = self.execution(node)
        if execution is None:
            return None
        artifacts = self.io(execution)[side].get(key) or []
        return artifacts[0] if artifacts else None
