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


# A task input whose value KFP (backend 2.5+) and Vertex AI set to the run's id: a task that has
# it never matches an earlier run's cache entry, even where a submit turns caching on for every
# task (`enable_caching=True` in aiplatform.PipelineJob and in kfp.Client's run calls).
RUN_ID_INPUT = "pipeline_run_id"
RUN_ID_PLACEHOLDER = "{{$.pipeline_job_uuid}}"


def uncached_tasks(target: str, cache_examples: bool = False) -> tuple[str, ...]:
    """The tasks that must run on every run of a `target` spec.

    The baselines read the serving folder and the run record. On `kfp` the ExampleGens too:
    FileBasedExampleGen fingerprints its files in the container's preCacheCheck hook, which
    Vertex AI runs before its cache lookup and KFP 2.x's driver never runs (its cache key is the
    task's inputs, command and image), so KFP would reuse the examples of the same path's old
    files. `cache_examples`: the user vouches that the data root's path names fixed data, so
    the CIFAR-10 ExampleGen may be cached by its path (the batch stage's folder still may not).
    """
    from pipeline import baselines  # imports TFX: not at the CLI's start

    tasks = baselines.UNCACHED_NODES
    if target == contract.TARGET_KFP:
        tasks += (contract.IMAGE_FOLDER_EXAMPLE_GEN_NODE,)
        if not cache_examples:
            tasks += (contract.EXAMPLE_GEN_NODE,)
    return tasks


def never_cache(spec: dict, tasks: Iterable[str]) -> None:
    """No cachingOptions on these tasks (so the spec says so), and a per-run input (so that a
    submit that turns caching on everywhere still finds no earlier run to reuse)."""
    dag_tasks = spec["root"]["dag"]["tasks"]
    for task in tasks:
        if task not in dag_tasks:
            continue
        dag_tasks[task].pop("cachingOptions", None)
        dag_tasks[task].setdefault("inputs", {}).setdefault("parameters", {})[RUN_ID_INPUT] = {
            "runtimeValue": {"constant": RUN_ID_PLACEHOLDER}}
        component = spec["components"][dag_tasks[task]["componentRef"]["name"]]
        component.setdefault("inputDefinitions", {}).setdefault("parameters", {})[
            RUN_ID_INPUT] = {"parameterType": "STRING"}


def use_step_entrypoint(spec: dict) -> None:
    """Each step starts through pipeline.container_entrypoint, which runs TFX's own entrypoint
    after sizing Beam's DirectRunner to the pod's CPU limit (not the node's core count)."""
    tfx_command = ["python", "-m", container_entrypoint.TFX_ENTRYPOINT]
    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor.get("container")
        if container and container.get("command") == tfx_command:
            container["command"] = ["python", "-m", container_entrypoint.__name__]


def finish(job: dict, target: str, cache_examples: bool = False) -> dict:
    """Post-compile checks and fixes of a `target` spec; fails on any resolver task."""
    spec = job["pipelineSpec"]
    never_cache(spec, uncached_tasks(target, cache_examples))
    use_step_entrypoint(spec)
    resolvers = sorted(label for label, kind in executor_kinds(spec).items()
                       if kind == "resolver")
    if resolvers:  # KFP 2.x: "resolver executors not implemented"
        raise ValueError(f"resolver tasks left in the spec: {', '.join(resolvers)}")
    return job
