"""Where a run finds its baselines: components instead of resolvers.

KFP 2.x's backend compiler refuses resolver tasks ("resolver executors not implemented"), and the
queries TFX 1.16's KubeflowV2 compiler writes for Vertex AI (`schema_title=... AND state=LIVE`)
have no context filter, so they would pick another pipeline's model or statistics from a shared
metadata store. Both targets therefore use the same three small components:

- ServedModelBaseline: the newest version in the serving base path (a runtime parameter) is the
  no-regression baseline; BaselineEvaluator treats its empty artifact on a first run as none.
- PreviousStatistics / RecordStatistics: the statistics of the last validated run, through a
  record file in <pipeline_root>/run_records/<pipeline_name>/, for the label drift check.

The local runner uses ServedModelBaseline too: the model a new one must not be worse than is the
one being served, which a --serving-dir shared with other output folders (or kept after
`make clean`) holds and this run's metadata store does not know. It keeps its MLMD resolver for
the previous statistics (one pipeline per metadata store there). `local_ir` switches caching off
for the nodes of UNCACHED_NODES, as the targets' specs do.
"""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_node
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto.orchestration import pipeline_pb2

from modules import contract
from pipeline import beam, configs

# Tasks whose result depends on the world, not on their inputs: a cache hit would be wrong.
UNCACHED_NODES = (contract.SERVED_MODEL_BASELINE_NODE, contract.PREVIOUS_STATISTICS_NODE,
                  contract.RECORD_STATISTICS_NODE)


def check_target(target: str | None) -> None:
    """None is the local runner; otherwise one of contract.COMPILE_TARGETS."""
    if target is not None and target not in contract.COMPILE_TARGETS:
        raise ValueError(f"unknown target {target!r}: choose one of "
                         f"{', '.join(contract.COMPILE_TARGETS)}")


def record_dir(config: configs.PipelineConfig) -> str:
    """Run records of this pipeline: one folder per pipeline name under the pipeline root."""
    return beam.join(beam.join(config.pipeline_root, contract.RUN_RECORDS_DIR),
                     config.pipeline_name)


def previous_statistics(config: configs.PipelineConfig) -> base_node.BaseNode:
    """A node with outputs["statistics"]: the last validated run's statistics, or no splits."""
    from components.previous_statistics import PreviousStatistics

    return PreviousStatistics(record_dir=record_dir(config)).with_id(
        contract.PREVIOUS_STATISTICS_NODE)


def record_statistics(config: configs.PipelineConfig, statistics: types.BaseChannel,
                      validator: base_node.BaseNode) -> base_node.BaseNode:
    """Records `statistics` for the next run, only once `validator` passed."""
    from components.previous_statistics import RecordStatistics

    record = RecordStatistics(statistics=statistics, record_dir=record_dir(config)).with_id(
        contract.RECORD_STATISTICS_NODE)
    record.add_upstream_node(validator)
    return record


def served_model_baseline(config: configs.PipelineConfig) -> base_node.BaseNode:
    """A node with outputs["model"]: the model served now (empty when nothing is)."""
    from components.served_model_baseline import ServedModelBaseline

    return ServedModelBaseline(serving_dir=config.serving_dir).with_id(
        contract.SERVED_MODEL_BASELINE_NODE)


def local_ir(dag: tfx_pipeline.Pipeline) -> pipeline_pb2.Pipeline:
    """`dag` compiled for LocalDagRunner.run_with_ir, with caching off for UNCACHED_NODES (TFX
    1.16's DSL sets caching for a whole pipeline only)."""
    from tfx.dsl.compiler import compiler

    ir = compiler.Compiler().compile(dag)
    for node in ir.nodes:
        if node.pipeline_node.node_info.id in UNCACHED_NODES:
            node.pipeline_node.execution_options.caching_options.enable_cache = False
    return ir
