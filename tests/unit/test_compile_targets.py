"""`compile-kfp --target kfp|vertex`: specs that KFP 2.x and Vertex AI can run as compiled.

KFP 2.x's backend refuses resolver tasks, and the container entrypoint imports a custom artifact
type by its schema title; both are checked on real compiles, without a cluster.
"""
from __future__ import annotations

import json
import os

import pytest
import yaml

from cli import kubeflow, targets
from modules import contract
from pipeline import baselines

ROOT = "gs://my-bucket/cifar10/pipeline_root"
BASE = ["--pipeline-root", ROOT, "--data-root", "gs://my-bucket/cifar10/data",
        "--image", "registry/cifar10-tfx:1", "--epochs", "1",
        # an Importer: KFP 2.x runs importer tasks, so they may stay
        "--hyperparameters-dir", "gs://my-bucket/cifar10/hyperparameters"]


def compile_target(tmp_path, target: str, monkeypatch, *extra: str) -> tuple[dict, str, str]:
    monkeypatch.setattr(kubeflow.logs, "configure", lambda verbose=False: None)
    output, kfp_output = str(tmp_path / "spec.json"), str(tmp_path / "spec.yaml")
    code = kubeflow.main([*BASE, "--target", target, "--output", output,
                          "--kfp-output", kfp_output, *extra], environ={})
    assert code == 0
    with open(kfp_output) as f:
        return yaml.safe_load(f), output, kfp_output


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> dict:
    found = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for target in contract.COMPILE_TARGETS:
            found[target] = compile_target(tmp_path_factory.mktemp(target), target, monkeypatch)
    return found


def executor_kinds(spec: dict) -> dict[str, str]:
    return {label: next(iter(e)) for label, e in spec["deploymentSpec"]["executors"].items()}


@pytest.mark.parametrize("target", contract.COMPILE_TARGETS)
def test_only_container_and_importer_executors(specs, target):
    kinds = executor_kinds(specs[target][0])
    assert "resolver" not in kinds.values()
    assert set(kinds.values()) == {"container", "importer"}, kinds


def test_kfp_writes_the_pipeline_spec_alone(specs):
    spec, output, kfp_output = specs[contract.TARGET_KFP]
    assert not os.path.exists(output)
    assert spec["defaultPipelineRoot"] == ROOT
    assert "pipelineSpec" not in spec and "root" in spec


def test_vertex_writes_the_pipeline_job_and_the_spec(specs):
    spec, output, _ = specs[contract.TARGET_VERTEX]
    with open(output) as f:
        job = json.load(f)
    # The same DAG; the YAML beside it is the kfp target's, whose ExampleGen always runs.
    assert job["pipelineSpec"]["root"]["dag"].keys() == spec["root"]["dag"].keys()
    assert spec == specs[contract.TARGET_KFP][0]
    assert job["runtimeConfig"]["gcsOutputDirectory"] == ROOT


@pytest.mark.parametrize("target", contract.COMPILE_TARGETS)
def test_baselines_come_from_this_pipeline_and_are_never_cached(specs, target):
    spec = specs[target][0]
    tasks = spec["root"]["dag"]["tasks"]
    for name in baselines.UNCACHED_NODES:
        never_cached(spec, name)
    assert tasks[contract.TRAINER_NODE]["cachingOptions"] == {"enableCache": True}
    served = tasks[contract.SERVED_MODEL_BASELINE_NODE]["inputs"]["parameters"]["serving_dir"]
    assert served == {"componentInputParameter": "serving_dir"}  # a runtime parameter
    record_dir = tasks[contract.PREVIOUS_STATISTICS_NODE]["inputs"]["parameters"]["record_dir"]
    assert record_dir["runtimeValue"]["constant"] == \
        f"{ROOT}/{contract.RUN_RECORDS_DIR}/{contract.PIPELINE_NAME}"
    assert set(tasks[contract.RECORD_STATISTICS_NODE]["dependentTasks"]) >= {
        contract.EXAMPLE_VALIDATOR_NODE}


def never_cached(spec: dict, name: str) -> None:
    """No cachingOptions, and an input each run sets to its own id (no earlier run matches)."""
    task = spec["root"]["dag"]["tasks"][name]
    assert "cachingOptions" not in task, name
    assert task["inputs"]["parameters"][targets.RUN_ID_INPUT] == {
        "runtimeValue": {"constant": "{{$.pipeline_job_uuid}}"}}, name
    definitions = spec["components"][task["componentRef"]["name"]]["inputDefinitions"]
    assert definitions["parameters"][targets.RUN_ID_INPUT] == {"parameterType": "STRING"}


def test_example_gen_runs_every_time_on_kfp_and_is_fingerprinted_on_vertex(specs):
    """KFP 2.x's driver never runs the preCacheCheck hook that fingerprints ExampleGen's files.
    The vertex target's PipelineJob keeps ExampleGen cached (Vertex AI runs the hook); its YAML,
    which a KFP cluster may be given too, is the kfp target's spec."""
    for target in contract.COMPILE_TARGETS:
        never_cached(specs[target][0], contract.EXAMPLE_GEN_NODE)  # the YAML of each
    with open(specs[contract.TARGET_VERTEX][1]) as f:
        vertex = json.load(f)["pipelineSpec"]
    task = vertex["root"]["dag"]["tasks"][contract.EXAMPLE_GEN_NODE]
    assert task["cachingOptions"] == {"enableCache": True}
    assert targets.RUN_ID_INPUT not in task["inputs"]["parameters"]
    executor = vertex["deploymentSpec"]["executors"][
        vertex["components"][task["componentRef"]["name"]]["executorLabel"]]
    assert "preCacheCheck" in executor["container"]["lifecycle"]
    assert contract.IMAGE_FOLDER_EXAMPLE_GEN_NODE in targets.uncached_tasks(contract.TARGET_KFP)
    assert contract.IMAGE_FOLDER_EXAMPLE_GEN_NODE not in targets.uncached_tasks(
        contract.TARGET_VERTEX)


def test_cache_examples_lets_kfp_cache_the_example_gen_by_its_path(tmp_path, monkeypatch):
    """For a data root whose path names fixed data: the ExampleGen keeps TFX's cachingOptions
    (KFP keys it on the data_root parameter), so the Tuner's search is reused on KFP too. The
    batch stage's image folder still runs every time, and so do the baselines."""
    spec, _, _ = compile_target(tmp_path, contract.TARGET_KFP, monkeypatch, "--cache-examples",
                                "--predict-dir", "gs://my-bucket/cifar10/incoming")
    tasks = spec["root"]["dag"]["tasks"]
    example_gen = tasks[contract.EXAMPLE_GEN_NODE]
    assert example_gen["cachingOptions"] == {"enableCache": True}
    assert targets.RUN_ID_INPUT not in example_gen["inputs"].get("parameters", {})
    assert example_gen["inputs"]["parameters"]["input_base"] == {
        "componentInputParameter": "data_root"}
    for name in (contract.IMAGE_FOLDER_EXAMPLE_GEN_NODE, *baselines.UNCACHED_NODES):
        never_cached(spec, name)


def test_cache_examples_is_refused_for_vertex_ai(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(kubeflow.logs, "configure", lambda verbose=False: None)
    code = kubeflow.main([*BASE, "--target", contract.TARGET_VERTEX, "--cache-examples",
                          "--output", str(tmp_path / "s.json")], environ={})
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2
    assert lines[-1] == ("error: --cache-examples is for --target kfp: Vertex AI already caches "
                         "the ExampleGen by its files' fingerprint")
    assert not (tmp_path / "s.json").exists()


def test_custom_artifact_titles_import_in_the_container(specs):
    """kubeflow_v2_run_executor imports a custom type by its schema title: it must resolve."""
    from tfx.orchestration.kubeflow.v2 import compiler_utils
    from tfx.types.artifact import Artifact
    from tfx.utils import import_utils

    spec = specs[contract.TARGET_KFP][0]
    titles = {yaml.safe_load(definition["artifactType"]["instanceSchema"])["title"]
              for component in spec["components"].values()
              for side in ("inputDefinitions", "outputDefinitions")
              for definition in component.get(side, {}).get("artifacts", {}).values()}
    custom = titles - set(compiler_utils.TITLE_TO_CLASS_PATH)
    assert custom, "expected the TFLite model's custom type in the spec"
    for title in custom:
        cls = import_utils.import_class_by_path(title)
        assert issubclass(cls, Artifact) and cls.TYPE_NAME == title


def test_bad_target_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(kubeflow.logs, "configure", lambda verbose=False: None)
    code = kubeflow.main([*BASE, "--target", "argo", "--output", str(tmp_path / "s.json")],
                         environ={})
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2
    assert lines == ["error: unknown --target 'argo': choose kfp (Kubeflow Pipelines 2.x) or "
                     "vertex (Vertex AI)"]
    assert not os.listdir(tmp_path)


def test_unknown_target_is_refused_by_the_dag_builder_too():
    with pytest.raises(ValueError, match="unknown target 'argo'"):
        baselines.check_target("argo")
