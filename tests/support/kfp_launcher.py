"""Runs a compiled PipelineSpec here, task by task, the way the KFP 2.x launcher runs it in pods.

Each container task runs its own `command` + `args` from deploymentSpec as a child process, with
`{{$}}` replaced by an ExecutorInput JSON built from the spec alone (component input/output
definitions, the task's inputs, runtime parameters, upstream output artifacts), the working
directory and PYTHONPATH set to an image-like copy of the project (image_context), and output
artifacts under a local pipeline root. The executor output file it reads back updates the output
artifacts' metadata for downstream tasks, as KFP records them in its MLMD. No caching; resolver
tasks are refused, as KFP 2.x's backend refuses them. The run's id replaces
`{{$.pipeline_job_uuid}}` in constant inputs, as both backends do. A container's preCacheCheck
hook runs first only with `pre_cache_check=True` (Vertex AI runs it; KFP 2.x's driver does not).
Tasks whose dependencies are done run side by side (`parallelism` at a time), as on a cluster.
"""
from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PLACEHOLDER = "{{$}}"
RUN_ID_PLACEHOLDER = "{{$.pipeline_job_uuid}}"  # KFP's and Vertex AI's: the run's id


class LaunchError(RuntimeError):
    """A task failed (its log tail is in the message) or the spec is one KFP would refuse."""


@dataclass
class TaskRun:
    """What one task got and gave: its ExecutorInput, output artifacts and log."""

    name: str
    executor_input: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    log: str = ""
    seconds: float = 0.0


def load_spec(path: str | Path) -> tuple[dict, dict[str, Any]]:
    """(PipelineSpec, runtime parameter values) from a PipelineJob JSON or a PipelineSpec YAML."""
    with open(path) as f:
        document = yaml.safe_load(f)  # JSON is YAML
    if "pipelineSpec" in document:  # Vertex AI PipelineJob
        return document["pipelineSpec"], document.get("runtimeConfig", {}).get(
            "parameterValues", {})
    return document, {}


def task_waves(spec: dict) -> list[list[str]]:
    """Root DAG tasks in waves, each needing only earlier ones (dependentTasks, producers)."""
    tasks = spec["root"]["dag"]["tasks"]
    needs = {name: set(task.get("dependentTasks", [])) | {
        source["taskOutputArtifact"]["producerTask"]
        for source in task.get("inputs", {}).get("artifacts", {}).values()
        if "taskOutputArtifact" in source} for name, task in tasks.items()}
    done: set[str] = set()
    waves = []
    while len(done) < len(tasks):
        ready = sorted(name for name in tasks if name not in done and needs[name] <= done)
        if not ready:
            raise LaunchError(f"dependency cycle among {sorted(set(tasks) - done)}")
        waves.append(ready)
        done.update(ready)
    return waves


def image_context(project: str | Path, destination: str | Path) -> Path:
    """The files `COPY . .` puts into the image: the project minus what .dockerignore excludes."""
    project, destination = Path(project), Path(destination)
    patterns = [line.strip() for line in (project / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(relative: str) -> bool:
        for pattern in patterns:
            pattern = pattern.rstrip("/")
            bare = pattern[3:] if pattern.startswith("**/") else pattern
            if fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(relative, bare) \
                    or fnmatch.fnmatch(os.path.basename(relative), bare):
                return True
        return False

    for root, dirs, files in os.walk(project):
        relative_root = os.path.relpath(root, project)
        dirs[:] = [d for d in dirs if not ignored(os.path.normpath(os.path.join(relative_root, d)))]
        for name in files:
            relative = os.path.normpath(os.path.join(relative_root, name))
            if not ignored(relative):
                (destination / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(project / relative, destination / relative)
    return destination


def _artifact_type(definition: dict) -> dict:
    kind = definition["artifactType"]
    return {"instanceSchema": kind["instanceSchema"]} if "instanceSchema" in kind else \
        {"schemaTitle": kind["schemaTitle"]}


class Launcher:
    """One pipeline run: call run() once; `tasks` holds every task's TaskRun afterwards."""

    def __init__(self, spec_path: str | Path, pipeline_root: str | Path, workdir: str | Path,
                 parameters: dict[str, Any] | None = None, timeout: int = 900,
                 parallelism: int = 2, pre_cache_check: bool = True):
        self.spec, defaults = load_spec(spec_path)
        for name, definition in self.spec["root"].get("inputDefinitions", {}).get(
                "parameters", {}).items():
            defaults.setdefault(name, definition.get("defaultValue"))
        self.parameters = {**defaults, **(parameters or {})}
        self.run_id = f"run-{uuid.uuid4().hex[:8]}"
        self.run_root = Path(pipeline_root) / self.spec["pipelineInfo"]["name"] / self.run_id
        self.workdir = Path(workdir)
        self.timeout = timeout
        self.parallelism = parallelism  # KFP runs independent tasks side by side too
        self.pre_cache_check = pre_cache_check
        self.tasks: dict[str, TaskRun] = {}

    def run(self) -> dict[str, TaskRun]:
        with ThreadPoolExecutor(self.parallelism) as pool:
            for wave in task_waves(self.spec):
                for name, run in zip(wave, pool.map(self._timed, wave), strict=True):
                    self.tasks[name] = run
        return self.tasks

    def _timed(self, name: str) -> TaskRun:
        start = time.monotonic()
        run = self._run_task(name)
        run.seconds = time.monotonic() - start
        return run

    def _run_task(self, name: str) -> TaskRun:
        task = self.spec["root"]["dag"]["tasks"][name]
        component = self.spec["components"][task["componentRef"]["name"]]
        executor = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]
        kind = next(iter(executor))
        if kind == "importer":
            return self._import(name, task, component, executor["importer"])
        if kind != "container":
            raise LaunchError(f"task {name}: {kind} executors not implemented (KFP 2.x backend)")
        run = TaskRun(name, executor_input=self._executor_input(name, task, component))
        container = executor["container"]
        pre_cache = container.get("lifecycle", {}).get("preCacheCheck")
        # e.g. FileBasedExampleGen's driver: span, version, fingerprint
        if pre_cache and self.pre_cache_check:
            run.log += self._execute(name, pre_cache["command"], pre_cache["args"],
                                     run.executor_input)
            driver_output = self._read_output(run.executor_input)
            run.executor_input["inputs"]["parameterValues"].update(
                driver_output.get("parameterValues", {}))
        run.log += self._execute(name, container["command"], container["args"],
                                 run.executor_input)
        produced = self._read_output(run.executor_input).get("artifacts", {})
        for key, artifact_list in run.executor_input["outputs"]["artifacts"].items():
            artifacts = artifact_list["artifacts"]
            for artifact, reported in zip(artifacts, produced.get(key, {}).get("artifacts", []),
                                          strict=False):
                artifact["metadata"] = reported.get("metadata", {})
            run.outputs[key] = artifacts
        return run

    def _import(self, name: str, task: dict, component: dict, importer: dict) -> TaskRun:
        """The KFP importer: one artifact at the given URI (constant or runtime parameter)."""
        source = importer["artifactUri"]
        uri = (source["runtimeValue"]["constant"] if "runtimeValue" in source
               else self.parameters[source["componentInputParameter"]])
        key, definition = next(iter(component["outputDefinitions"]["artifacts"].items()))
        artifact = {"name": f"{self.run_id}/{name}/{key}", "uri": uri,
                    "type": _artifact_type(definition), "metadata": importer.get("metadata", {})}
        return TaskRun(name, outputs={key: [artifact]})

    def _parameter(self, source: dict) -> Any:
        if "runtimeValue" in source:
            constant = source["runtimeValue"]["constant"]
            return self.run_id if constant == RUN_ID_PLACEHOLDER else constant
        if "componentInputParameter" in source:
            return self.parameters[source["componentInputParameter"]]
        raise LaunchError(f"unsupported parameter source {source}")

    def _executor_input(self, name: str, task: dict, component: dict) -> dict:
        task_root = self.run_root / name
        inputs = task.get("inputs", {})
        artifacts = {}
        for key, source in inputs.get("artifacts", {}).items():
            producer = source["taskOutputArtifact"]
            upstream = self.tasks[producer["producerTask"]].outputs[producer["outputArtifactKey"]]
            artifacts[key] = {"artifacts": [dict(a) for a in upstream]}
        outputs = {key: {"artifacts": [{
            "name": f"{self.run_id}/{name}/{key}", "uri": str(task_root / key),
            "type": _artifact_type(definition), "metadata": {}}]}
            for key, definition in component.get("outputDefinitions", {}).get(
                "artifacts", {}).items()}
        return {"inputs": {"parameterValues": {key: self._parameter(source) for key, source
                                               in inputs.get("parameters", {}).items()},
                           "artifacts": artifacts},
                "outputs": {"artifacts": outputs,
                            "outputFile": str(task_root / "executor_output.json")}}

    def _execute(self, name: str, command: list[str], args: list[str],
                 executor_input: dict) -> str:
        serialized = json.dumps(executor_input)
        argv = [part.replace(PLACEHOLDER, serialized) for part in [*command, *args]]
        env = {**os.environ, "PYTHONPATH": str(self.workdir),
               # `python` in the command is the image's interpreter: here, this one.
               "PATH": os.pathsep.join([os.path.dirname(sys.executable),
                                        os.environ.get("PATH", "")])}
        Path(executor_input["outputs"]["outputFile"]).parent.mkdir(parents=True, exist_ok=True)
        process = subprocess.run(argv, cwd=self.workdir, env=env, capture_output=True,
                                 text=True, timeout=self.timeout, check=False)
        log = process.stdout + process.stderr
        if process.returncode != 0:
            raise LaunchError(f"task {name} failed (exit {process.returncode}):\n{log[-6000:]}")
        return log

    @staticmethod
    def _read_output(executor_input: dict) -> dict:
        path = Path(executor_input["outputs"]["outputFile"])
        return json.loads(path.read_text()) if path.exists() else {}
