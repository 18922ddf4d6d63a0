"""`--trainer-workers N` (issue #15): the Trainer as a Vertex AI custom job of N replicas.

The compiled Vertex spec runs TFX's Google Cloud Trainer, whose executor starts the custom job;
that executor is run here on the compiled step's own parameters up to the one call that would
reach Vertex AI (the Google API client is the only thing replaced), and the request it would send
is checked with Vertex AI's own protos. Open-source KFP and a local run refuse the flag.
"""
from __future__ import annotations

import json
import os
import types

import pytest

from cli import kubeflow
from cli.main import main
from modules import contract, training
from pipeline import configs

IMAGE = "us-docker.pkg.dev/my-project/pipelines/cifar10-tfx:1.2.3"
ROOT = "gs://my-bucket/cifar10/pipeline_root"
BASE = ["--pipeline-root", ROOT, "--data-root", "gs://my-bucket/cifar10/data", "--image", IMAGE,
        "--epochs", "2"]
VERTEX = ["--project", "my-project", "--region", "europe-west4"]
CLOUD_EXECUTOR = "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor"
TRAINER_EXECUTOR = "tfx.components.trainer.executor.GenericExecutor"


@pytest.fixture(autouse=True)
def _keep_pytest_logging(monkeypatch):
    monkeypatch.setattr(kubeflow.logs, "configure", lambda verbose=False: None)


def _compile(tmp_path, *argv: str) -> dict:
    output = tmp_path / "spec.json"
    assert kubeflow.main([*BASE, *argv, "--output", str(output)], environ={}) == 0
    with open(output) as f:
        return json.load(f)["pipelineSpec"]


def _trainer(spec: dict) -> tuple[dict, dict]:
    """(the Trainer's executor, its compile-time parameters)."""
    task = spec["root"]["dag"]["tasks"][contract.TRAINER_NODE]
    label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
    parameters = {name: value["runtimeValue"]["constant"]
                  for name, value in task["inputs"]["parameters"].items()}
    return spec["deploymentSpec"]["executors"][label], parameters


def _executor_class(executor: dict) -> str:
    args = executor["container"]["args"]
    return args[args.index("--executor_class_path") + 1]


@pytest.fixture(scope="module")
def three_workers(tmp_path_factory) -> dict:
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(kubeflow.logs, "configure", lambda verbose=False: None)
        return _compile(tmp_path_factory.mktemp("vertex"), "--trainer-workers", "3", *VERTEX,
                        "--trainer-machine-type", "n1-highmem-16")


# --- the compiled Vertex AI spec ----------------------------------------------------------------

def test_the_trainer_step_starts_a_custom_job_of_a_chief_and_two_workers(three_workers):
    executor, parameters = _trainer(three_workers)
    assert _executor_class(executor) == CLOUD_EXECUTOR
    assert executor["container"]["image"] == IMAGE  # the step that starts and watches the job
    custom = json.loads(parameters["custom_config"])
    assert custom["ai_platform_enable_vertex"] is True
    assert custom["ai_platform_vertex_region"] == "europe-west4"
    job = custom["ai_platform_training_args"]
    assert job["project"] == "my-project"
    pools = job["job_spec"]["worker_pool_specs"]
    assert [pool["replica_count"] for pool in pools] == [1, 2]
    assert {pool["container_spec"]["image_uri"] for pool in pools} == {IMAGE}
    assert {pool["machine_spec"]["machine_type"] for pool in pools} == {"n1-highmem-16"}
    # run_fn's own settings travel with it; the replicas train with MultiWorkerMirroredStrategy
    assert custom["epochs"] == 2 and custom["code_version"]
    assert custom["distribution_strategy"] == contract.STRATEGY_MULTI_WORKER
    assert parameters["run_fn"] == configs.RUN_FN


def test_only_the_trainer_changes(three_workers, tmp_path):
    one = _compile(tmp_path, "--trainer-workers", "1", *VERTEX)
    assert _executor_class(_trainer(one)[0]) == TRAINER_EXECUTOR
    assert "ai_platform" not in _trainer(one)[1]["custom_config"]
    assert sorted(one["root"]["dag"]["tasks"]) == sorted(three_workers["root"]["dag"]["tasks"])
    for name, executor in three_workers["deploymentSpec"]["executors"].items():
        if "Trainer" not in name:
            assert executor == one["deploymentSpec"]["executors"][name], name


def test_one_worker_is_the_spec_of_old(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert _compile(tmp_path / "a") == _compile(tmp_path / "b", "--trainer-workers", "1")


# --- TFX's executor, up to the Vertex AI call ---------------------------------------------------

class _JobServiceClient:
    """Stands in for google.cloud.aiplatform.gapic.JobServiceClient (no network here): builds
    the request with Vertex AI's own protos, so a key Vertex does not know fails here too."""

    requests: list = []

    def __init__(self, client_options: dict):
        self.endpoint = client_options["api_endpoint"]

    def create_custom_job(self, parent: str, custom_job: dict):
        from google.cloud.aiplatform_v1.types import job_service

        request = job_service.CreateCustomJobRequest(parent=parent, custom_job=custom_job)
        self.requests.append((self.endpoint, request))
        return types.SimpleNamespace(name=f"{parent}/customJobs/1")

    def get_custom_job(self, name: str, retry=None):
        from google.cloud.aiplatform_v1.types.job_state import JobState

        return types.SimpleNamespace(state=JobState.JOB_STATE_SUCCEEDED)


def _artifact(kind, uri: str, **properties):
    artifact = kind()
    artifact.uri = uri
    for name, value in properties.items():
        setattr(artifact, name, value)
    return artifact


def test_the_executor_asks_vertex_for_the_compiled_pools(three_workers, monkeypatch):
    from tfx.extensions.google_cloud_ai_platform import training_clients
    from tfx.extensions.google_cloud_ai_platform.trainer import executor as cloud_executor
    from tfx.scripts import run_executor
    from tfx.types import artifact_utils, standard_artifacts

    monkeypatch.setattr(training_clients, "gapic",
                        types.SimpleNamespace(JobServiceClient=_JobServiceClient))
    monkeypatch.setattr(_JobServiceClient, "requests", [])
    _, exec_properties = _trainer(three_workers)  # as the step's container receives them
    model_uri = f"{ROOT}/Trainer/model/7"
    inputs = {
        "examples": [_artifact(standard_artifacts.Examples, f"{ROOT}/Cifar10ExampleGen/1",
                               split_names=artifact_utils.encode_split_names(
                                   [contract.TRAIN_SPLIT, contract.EVAL_SPLIT]))],
        "transform_graph": [_artifact(standard_artifacts.TransformGraph,
                                      f"{ROOT}/Transform/transform_graph/4")],
    }
    outputs = {"model": [_artifact(standard_artifacts.Model, model_uri)],
               "model_run": [_artifact(standard_artifacts.ModelRun,
                                       f"{ROOT}/Trainer/model_run/7")]}

    cloud_executor.GenericExecutor().Do(inputs, outputs, dict(exec_properties))

    [(endpoint, request)] = _JobServiceClient.requests
    assert endpoint == "europe-west4-aiplatform.googleapis.com"
    assert request.parent == "projects/my-project/locations/europe-west4"
    pools = request.custom_job.job_spec.worker_pool_specs
    assert [pool.replica_count for pool in pools] == [1, 2]
    assert {pool.container_spec.image_uri for pool in pools} == {IMAGE}
    assert {pool.machine_spec.machine_type for pool in pools} == {"n1-highmem-16"}
    # every replica runs TFX's own Trainer executor on the same artifacts, with run_fn's settings
    commands = {tuple(pool.container_spec.command) for pool in pools}
    assert len(commands) == 1
    command = list(commands.pop())
    assert command[:3] == ["python", "-m", "tfx.scripts.run_executor"]
    args, _ = run_executor.parse_flags(["run_executor", *command[3:]])
    assert args.executor_class_path == TRAINER_EXECUTOR
    assert artifact_utils.parse_artifact_dict(args.outputs)["model"][0].uri == model_uri
    replica_properties = json.loads(args.exec_properties)
    assert replica_properties["run_fn"] == configs.RUN_FN
    custom = json.loads(replica_properties["custom_config"])
    assert custom["distribution_strategy"] == contract.STRATEGY_MULTI_WORKER


@pytest.mark.parametrize("task, chief", [({"type": "chief", "index": 0}, True),
                                         ({"type": "worker", "index": 0}, False),
                                         ({"type": "worker", "index": 1}, False)])
def test_run_fn_finds_its_chief_in_vertex_tf_config(task, chief, monkeypatch):
    """Vertex AI's TF_CONFIG names pool 0 `chief` and pool 1 `worker` (plus keys TF ignores)."""
    import tensorflow as tf

    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"chief": ["workerpool0-0:2222"],
                    "worker": ["workerpool1-0:2222", "workerpool1-1:2222"]},
        "task": {**task, "trial": ""}, "environment": "cloud", "job": {}}))
    strategy = types.SimpleNamespace(
        cluster_resolver=tf.distribute.cluster_resolver.TFConfigClusterResolver())
    monkeypatch.setattr(training, "_is_multi_worker", lambda _: True)
    assert training._is_chief(strategy) is chief


# --- refused where it cannot run ----------------------------------------------------------------

def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["--target", "kfp", "--trainer-workers", "3", *VERTEX],
     "--trainer-workers 3: open-source KFP runs each step as one pod and has no multi-replica "
     "training job; use --target vertex"),
    (["--trainer-workers", "3"],
     "--trainer-workers 3 needs --project (or CIFAR10_GCP_PROJECT) and --region (or "
     "CIFAR10_GCP_REGION)"),
    (["--trainer-workers", "2", *VERTEX, "--distribution-strategy", "mirrored"],
     "--distribution-strategy mirrored: trainer_workers > 1 trains across the replicas with "
     "multi_worker"),
    (["--trainer-workers", "2", *VERTEX, "--trainer-gpus", "1", "--trainer-gpu-type", "T4"],
     "--trainer-gpus size the Trainer's pod; with --trainer-workers 2 every replica is a "
     "--trainer-machine-type machine"),
    (["--trainer-workers", "0"], "--trainer-workers 0: trainer_workers must be at least 1"),
    (["--trainer-workers", "2", *VERTEX, "--trainer-machine-type", " "],
     "trainer_machine_type must name a machine type"),
])
def test_compile_refuses_in_one_line(argv, message, capsys, tmp_path):
    output = tmp_path / "spec.json"
    assert kubeflow.main([*BASE, *argv, "--output", str(output)], environ={}) == 2
    assert message in _one_error_line(capsys)
    assert os.listdir(tmp_path) == []


def test_a_local_run_refuses_several_workers(capsys, tmp_path):
    assert main(["run", "--trainer-workers", "2", "--output-dir", str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys)
    assert "--trainer-workers 2: a local run trains in one process" in line, line
    assert "docs/scale-out.md" in line
    assert os.listdir(tmp_path) == []  # nothing downloaded or run


def test_the_rules_live_in_pipeline_config():
    config = configs.PipelineConfig(trainer_workers=3)
    assert config.distribution_strategy == contract.STRATEGY_MULTI_WORKER  # implied
    for target in (None, contract.TARGET_KFP, contract.TARGET_VERTEX):  # vertex: no project
        with pytest.raises(configs.ConfigError) as error:
            config.validate_target(target)
        assert (error.value.setting, error.value.value) == ("trainer_workers", 3)
    configs.PipelineConfig(trainer_workers=3, gcp_project="p", gcp_region="r",
                           image=IMAGE).validate_target(contract.TARGET_VERTEX)
    configs.PipelineConfig().validate_target(contract.TARGET_KFP)  # one worker runs anywhere
