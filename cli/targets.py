"""What differs between `compile-kfp --target kfp` and `--target vertex` after TFX compiled.

Both compile the same DAG (pipeline.baselines: no resolver tasks); vertex writes the PipelineJob
JSON that aiplatform.PipelineJob submits (and, as before, the PipelineSpec YAML beside it), kfp
writes only the PipelineSpec YAML that a KFP 2.x cluster takes.
"""
from __future__ import annotations

from collections.abc import Iterable

from modules import contract
from pipeline import container_entrypoint

TARGET_HELP = (f"{contract.TARGET_VERTEX} (default): a Vertex AI PipelineJob JSON at --output "
               f"and the PipelineSpec YAML at --kfp-output; {contract.TARGET_KFP}: only the "
               "PipelineSpec YAML for a KFP 2.x cluster, at --kfp-output (default --output with "
               ".yaml)")


def target_error(target: str) -> str | None:
    """The one-line message for an unknown target, or None."""
    if target in contract.COMPILE_TARGETS:
        return None
    return (f"unknown --target {target!r}: choose {contract.TARGET_KFP} (Kubeflow Pipelines "
            f"2.x) or {contract.TARGET_VERTEX} (Vertex AI)")


def executor_kinds(spec: dict) -> dict[str, str]:
    """executor label -> container | importer | resolver | ..., from a PipelineSpec dict."""
    return {label: next(iter(executor)) for label, executor
            in spec["deploymentSpec"]["executors"].items()}


def disable_cache(spec: dict, tasks: Iterable[str]) -> None:
    """KFP and Vertex AI cache per task; tasks that look at the world must always run."""
    dag_tasks = spec["root"]["dag"]["tasks"]
    for task in tasks:
        if task in dag_tasks:
            dag_tasks[task].pop("cachingOptions", None)


def use_step_entrypoint(spec: dict) -> None:
    """Each step starts through pipeline.container_entrypoint, which runs TFX's own entrypoint
    after sizing Beam's DirectRunner to the pod's CPU limit (not the node's core count)."""
    tfx_command = ["python", "-m", container_entrypoint.TFX_ENTRYPOINT]
    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor.get("container")
        if container and container.get("command") == tfx_command:
            container["command"] = ["python", "-m", container_entrypoint.__name__]


def finish(job: dict, uncached: Iterable[str]) -> dict:
    """Post-compile checks and fixes shared by both targets; fails on any resolver task."""
    spec = job["pipelineSpec"]
    disable_cache(spec, uncached)
    use_step_entrypoint(spec)
    resolvers = sorted(label for label, kind in executor_kinds(spec).items()
                       if kind == "resolver")
    if resolvers:  # KFP 2.x: "resolver executors not implemented"
        raise ValueError(f"resolver tasks left in the spec: {', '.join(resolvers)}")
    return job
