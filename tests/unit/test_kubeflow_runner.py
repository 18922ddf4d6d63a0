"""cli.kubeflow (`cifar10-tfx compile-kfp`, kubeflow_runner.py): compiles offline to a KFP 2.x /
Vertex AI spec that holds the whole DAG.

One real compile (module fixture) with gs:// locations, Dataflow, tuning and Trainer GPUs is
checked against what a cluster would run: every step, the edges, the image, the Beam arguments,
the runtime parameters, the pipeline root; then it is loaded with the kfp SDK (and Vertex AI's).
Bad flags are checked in-process and once as a real command.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from cli import kubeflow as kr
from modules import contract

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = "us-docker.pkg.dev/my-project/pipelines/cifar10-tfx:1.2.3"
ROOT = "gs://my-bucket/cifar10/pipeline_root"
DATA = "gs://my-bucket/cifar10/data"
SERVING = "gs://my-bucket/cifar10/serving"
TFLITE = "gs://my-bucket/cifar10/tflite"
# KubeflowV2DagRunner turns a custom artifact type into a schema title and accepts only names
# like "project.TypeName" (tfx.orchestration.kubeflow.v2.compiler_utils, TFX 1.16).
KFP_TYPE_NAME = re.compile(r"^[a-z][a-z0-9-_]{2,20}[.][A-Z][a-zA-Z0-9-_]{2,49}$")


def _tflite_type_name():
    if importlib.util.find_spec("components.tflite_converter") is None:
        return None
    from components.artifacts import TFLiteModel

    return TFLiteModel.TYPE_NAME


TFLITE_TYPE_NAME = _tflite_type_name()
# The TFLite converter is in the compiled DAG when it exists and KFP accepts its artifact type;
# otherwise the shared compile goes without it and test_default_compile_has_tflite says why.
HAS_TFLITE = bool(TFLITE_TYPE_NAME and KFP_TYPE_NAME.fullmatch(TFLITE_TYPE_NAME))
TFLITE_FLAGS = [] if HAS_TFLITE else ["--no-tflite"]
BEAM_STEPS = ("Cifar10ExampleGen", "StatisticsGen", "Transform", "Evaluator")
# No resolver tasks (KFP 2.x refuses them): baselines come from components (pipeline.baselines).
BASELINE = "ServedModelBaseline"
PREVIOUS_STATS, RECORD_STATS = "PreviousStatistics", "RecordStatistics"
DATAFLOW_FLAGS = [
    "--beam-runner", "dataflow", "--project", "my-project", "--region", "europe-west4",
    "--service-account", "runner@my-project.iam.gserviceaccount.com",
    "--max-num-workers", "8",
]


def _no_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("CIFAR10_")}


def _compile(tmp_dir, argv, environ=None) -> tuple[dict, dict, str]:
    """Runs main() in-process (TF is imported once per session); returns (job, kfp spec, stdout)."""
    import yaml

    output = os.path.join(tmp_dir, "out", "spec.json")
    kfp_output = os.path.join(tmp_dir, "out", "spec.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kr.logs, "configure", lambda verbose=False: None)  # keep pytest's logging
        code = kr.main(argv + ["--output", output, "--kfp-output", kfp_output],
                       environ=_no_env() if environ is None else environ)
    assert code == 0, "compile failed: see the captured stderr"
    with open(output) as f:
        job = json.load(f)
    with open(kfp_output) as f:
        spec = yaml.safe_load(f)
    return job, spec, kfp_output


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kfp")
    job, spec, kfp_path = _compile(tmp, [
        "--pipeline-root", ROOT, "--data-root", DATA, "--serving-dir", SERVING,
        "--tflite-dir", TFLITE, "--image", IMAGE,
        "--tune", "--epochs", "7", "--seed", "7", "--accuracy-threshold", "0.8",
        "--distribution-strategy", "mirrored",
        "--trainer-cpu", "8", "--trainer-memory", "30", "--trainer-gpus", "2",
        "--trainer-gpu-type", "NVIDIA_TESLA_T4",
        *DATAFLOW_FLAGS, "--beam-arg=--disk_size_gb=50",
    ] + TFLITE_FLAGS)
    return {"job": job, "spec": spec, "kfp_path": kfp_path, "json_path": str(tmp / "out" /
                                                                            "spec.json")}


def _tasks(job: dict) -> dict:
    return job["pipelineSpec"]["root"]["dag"]["tasks"]


def _upstream(task: dict) -> set[str]:
    """Producers a task waits for: explicit dependencies and the tasks its inputs come from."""
    producers = set(task.get("dependentTasks", []))
    for kind in ("artifacts", "parameters"):
        for value in task.get("inputs", {}).get(kind, {}).values():
            for key in ("taskOutputArtifact", "taskOutputParameter"):
                if key in value:
                    producers.add(value[key]["producerTask"])
    return producers


def _executor(job: dict, task_name: str) -> dict:
    tasks = _tasks(job)
    component = job["pipelineSpec"]["components"][tasks[task_name]["componentRef"]["name"]]
    return job["pipelineSpec"]["deploymentSpec"]["executors"][component["executorLabel"]]


def _constant(task: dict, name: str):
    return task["inputs"]["parameters"][name]["runtimeValue"]["constant"]


def _tflite_task(job: dict):
    return next((t for t in _tasks(job) if "tflite" in t.lower()), None)


# --- the compiled spec ------------------------------------------------------------------------

def test_every_component_is_a_task(compiled):
    tasks = set(_tasks(compiled["job"]))
    expected = {"Cifar10ExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                "Transform", "Tuner", "Trainer", "Evaluator", "Pusher",
                # the served model, the previous validated statistics, and their record
                BASELINE, PREVIOUS_STATS, RECORD_STATS}
    assert expected <= tasks
    assert (_tflite_task(compiled["job"]) is not None) == HAS_TFLITE
    assert len(tasks) == len(expected) + HAS_TFLITE


def test_edges(compiled):
    tasks = _tasks(compiled["job"])
    expected = {
        "Cifar10ExampleGen": set(),
        "ImportSchemaGen": set(),
        "StatisticsGen": {"Cifar10ExampleGen", "ImportSchemaGen"},
        PREVIOUS_STATS: set(),
        "ExampleValidator": {"StatisticsGen", "ImportSchemaGen", PREVIOUS_STATS},
        RECORD_STATS: {"StatisticsGen", "ExampleValidator"},
        # no Transform (so no training) on data that failed validation
        "Transform": {"Cifar10ExampleGen", "ImportSchemaGen", "ExampleValidator"},
        "Tuner": {"Cifar10ExampleGen", "Transform"},
        "Trainer": {"Cifar10ExampleGen", "Transform", "Tuner"},
        BASELINE: set(),
        "Evaluator": {"Cifar10ExampleGen", "Trainer", BASELINE},
    }
    for name, producers in expected.items():
        assert _upstream(tasks[name]) == producers, name
    assert "ExampleValidator" in tasks["Transform"]["dependentTasks"]
    hyperparameters = tasks["Trainer"]["inputs"]["artifacts"]["hyperparameters"]
    assert hyperparameters["taskOutputArtifact"]["producerTask"] == "Tuner"
    baseline = tasks["Evaluator"]["inputs"]["artifacts"]["baseline_model"]
    assert baseline["taskOutputArtifact"]["producerTask"] == BASELINE
    pusher = _upstream(tasks["Pusher"])
    converter = _tflite_task(compiled["job"])
    # the model card of each pushed version reads the statistics and the hyperparameters too;
    # the baseline: nothing is pushed if another run pushed since it was taken
    assert pusher == {"Trainer", "Evaluator", "StatisticsGen", "Tuner", BASELINE} | (
        {converter} if converter else set())
    baseline = tasks["Pusher"]["inputs"]["artifacts"]["baseline_model"]
    assert baseline["taskOutputArtifact"]["producerTask"] == BASELINE
    if converter:
        assert {"Trainer", "Evaluator"} <= _upstream(tasks[converter])


def test_every_container_runs_the_image(compiled):
    job = compiled["job"]
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    containers = {label: e["container"] for label, e in executors.items() if "container" in e}
    assert not [label for label, e in executors.items() if "resolver" in e]
    assert len(containers) == len(executors)
    for label, container in containers.items():
        assert container["image"] == IMAGE, label
        # TFX's entrypoint, behind the one that sizes Beam to the pod's CPU limit
        assert container["command"] == ["python", "-m", "pipeline.container_entrypoint"], label
    # ExampleGen's driver (input fingerprinting) also runs in the image, via the default command
    driver = _executor(job, "Cifar10ExampleGen")["container"]["lifecycle"]["preCacheCheck"]
    assert driver["command"][-1].endswith("file_based_example_gen.driver")
    # the project's own executors are imported from the image
    assert "components.cifar10_example_gen.executor.Executor" in \
        _executor(job, "Cifar10ExampleGen")["container"]["args"]
    assert "components.serving_pusher.executor.Executor" in \
        _executor(job, "Pusher")["container"]["args"]


def test_beam_steps_get_the_dataflow_arguments(compiled):
    job = compiled["job"]
    expected = [
        "--runner=DataflowRunner", "--project=my-project", "--region=europe-west4",
        f"--temp_location={ROOT}/beam-temp", "--experiments=use_runner_v2",
        f"--sdk_container_image={IMAGE}", "--sdk_location=container",
        "--service_account_email=runner@my-project.iam.gserviceaccount.com",
        "--max_num_workers=8", "--disk_size_gb=50",
    ]
    for name in BEAM_STEPS:
        args = _executor(job, name)["container"]["args"]
        assert args[-len(expected):] == expected, name  # --beam-arg ones last: they win
        assert not any(a.startswith("--direct_") for a in args), name
    driver = _executor(job, "Cifar10ExampleGen")["container"]["lifecycle"]["preCacheCheck"]
    assert "--runner=DataflowRunner" in driver["args"]


def test_runtime_parameters(compiled):
    job, spec = compiled["job"], compiled["spec"]
    locations = {"data_root": DATA, "serving_dir": SERVING}
    if HAS_TFLITE:
        locations["tflite_dir"] = TFLITE
    definitions = job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    assert set(definitions) == set(locations)
    for name, value in locations.items():
        assert definitions[name] == {"parameterType": "STRING", "defaultValue": value,
                                     "isOptional": True}
    assert job["runtimeConfig"]["parameterValues"] == locations
    assert spec["root"]["inputDefinitions"]["parameters"] == definitions
    tasks = _tasks(job)
    assert tasks["Cifar10ExampleGen"]["inputs"]["parameters"]["input_base"] == {
        "componentInputParameter": "data_root"}
    assert tasks["Pusher"]["inputs"]["parameters"]["serving_dir"] == {
        "componentInputParameter": "serving_dir"}


def test_compile_time_settings(compiled):
    tasks = _tasks(compiled["job"])
    trainer = json.loads(_constant(tasks["Trainer"], "custom_config"))
    assert trainer["epochs"] == 7 and trainer["distribution_strategy"] == "mirrored"
    assert trainer["seed"] == 7 and json.loads(_constant(tasks["Tuner"], "custom_config"))[
        "seed"] == 7  # the search's random points follow the same seed
    eval_config = json.loads(_constant(tasks["Evaluator"], "eval_config"))
    accuracy = eval_config["metrics_specs"][0]["metrics"][0]
    assert accuracy["class_name"] == "SparseCategoricalAccuracy"
    assert accuracy["threshold"]["value_threshold"]["lower_bound"] == pytest.approx(0.8)
    # the schema is read inside the image, not from this checkout
    assert _constant(tasks["ImportSchemaGen"], "schema_file") == kr.CONTAINER_SCHEMA_FILE
    relative = kr.CONTAINER_SCHEMA_FILE.removeprefix("/pipeline/")
    assert os.path.isfile(os.path.join(PROJECT_DIR, relative))
    assert all(t["cachingOptions"]["enableCache"] for t in tasks.values() if "cachingOptions" in t)


def test_trainer_resources(compiled):
    resources = _executor(compiled["job"], "Trainer")["container"]["resources"]
    # --trainer-memory is in GiB: "30Gi", and the numeric field in decimal GB (KFP's SDK's way)
    assert resources["cpuLimit"] == 8 and resources["memoryLimit"] == pytest.approx(32.21225472)
    assert resources["resourceCpuLimit"] == "8" and resources["resourceMemoryLimit"] == "30Gi"
    assert resources["accelerator"]["type"] == "NVIDIA_TESLA_T4"
    assert int(resources["accelerator"]["count"]) == 2
    assert "resources" not in _executor(compiled["job"], "Transform")["container"]


def test_pipeline_root_and_name(compiled):
    job, spec = compiled["job"], compiled["spec"]
    assert job["runtimeConfig"]["gcsOutputDirectory"] == ROOT
    assert spec["defaultPipelineRoot"] == ROOT
    assert job["pipelineSpec"]["pipelineInfo"]["name"] == "cifar10"
    assert job["pipelineSpec"]["schemaVersion"] == "2.1.0"
    assert "sqlite" not in json.dumps(job).lower()  # MLMD is the orchestrator's: none compiled in


@pytest.mark.skipif(TFLITE_TYPE_NAME is None, reason="no components.tflite_converter yet")
@pytest.mark.xfail(not HAS_TFLITE, strict=True, reason=(
    f"components/artifacts.py: TFLiteModel.TYPE_NAME {TFLITE_TYPE_NAME!r} is not a KFP schema "
    "title; KubeflowV2DagRunner needs a name like 'cifar10.TFLiteModel'"))
def test_default_compile_has_tflite(tmp_path):
    """Without --no-tflite (the default) the converter sits between Evaluator and Pusher."""
    job, _, _ = _compile(tmp_path, ["--pipeline-root", ROOT, "--data-root", DATA,
                                    "--image", IMAGE])
    converter = _tflite_task(job)
    assert converter is not None
    tasks = _tasks(job)
    assert {"Trainer", "Evaluator"} <= _upstream(tasks[converter])
    assert converter in _upstream(tasks["Pusher"])
    assert job["runtimeConfig"]["parameterValues"]["tflite_dir"] == f"{ROOT}/tflite_model"
    assert tasks["Pusher"]["inputs"]["parameters"]["tflite_dir"] == {
        "componentInputParameter": "tflite_dir"}


# --- loading with the SDKs that submit it -----------------------------------------------------

def test_spec_parses_as_kfp_protos(compiled):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    # ParseDict rejects unknown fields: the files are exactly the protos KFP and Vertex define
    job = json_format.ParseDict(compiled["job"], pipeline_spec_pb2.PipelineJob())
    assert job.runtime_config.gcs_output_directory == ROOT
    spec = json_format.ParseDict(compiled["spec"], pipeline_spec_pb2.PipelineSpec())
    assert spec.default_pipeline_root == ROOT
    assert set(spec.root.dag.tasks) == set(_tasks(compiled["job"]))


def test_kfp_sdk_loads_the_yaml(compiled):
    import kfp.components

    pipeline = kfp.components.load_component_from_file(compiled["kfp_path"])
    assert pipeline.name == "cifar10"
    inputs = pipeline.component_spec.inputs
    assert inputs["data_root"].default == DATA and inputs["serving_dir"].default == SERVING
    # what kfp.Client().create_run_from_pipeline_package() reads before submitting
    from kfp.client import client

    extract = getattr(client, "_extract_pipeline_yaml", None)
    if extract is not None:
        doc = extract(compiled["kfp_path"])
        assert doc.pipeline_spec.default_pipeline_root == ROOT


def test_vertex_sdk_builds_a_job(compiled):
    aiplatform = pytest.importorskip("google.cloud.aiplatform")
    from google.auth.credentials import AnonymousCredentials

    job = aiplatform.PipelineJob(  # offline: nothing is submitted
        display_name="cifar10-test", template_path=compiled["json_path"],
        pipeline_root="gs://other-bucket/root", parameter_values={"data_root": "gs://x/data"},
        project="my-project", location="europe-west4", credentials=AnonymousCredentials())
    config = job._gca_resource.runtime_config  # noqa: SLF001 - the request it would send
    assert config.gcs_output_directory == "gs://other-bucket/root"
    values = {k: getattr(v, "string_value", v) for k, v in config.parameter_values.items()}
    assert values["data_root"] == "gs://x/data"  # the submission's value wins
    assert values["serving_dir"] == SERVING  # the compiled default stays


def test_vertex_sdk_caching_everywhere_still_runs_the_baselines_every_time(compiled):
    """`enable_caching=True` turns caching on for every task of the job; the baselines keep an
    input that Vertex AI sets to each run's id, so no earlier run's result matches them."""
    aiplatform = pytest.importorskip("google.cloud.aiplatform")
    from google.auth.credentials import AnonymousCredentials

    from cli import targets
    from pipeline import baselines

    job = aiplatform.PipelineJob(  # offline: nothing is submitted
        display_name="cifar10-test", template_path=compiled["json_path"], enable_caching=True,
        project="my-project", location="europe-west4", credentials=AnonymousCredentials())
    resource = job._gca_resource  # noqa: SLF001 - the request it would send
    spec = type(resource).to_dict(resource)["pipeline_spec"]
    for name in baselines.UNCACHED_NODES:
        task = spec["root"]["dag"]["tasks"][name]
        assert task["cachingOptions"] == {"enableCache": True}  # the SDK's override
        assert task["inputs"]["parameters"][targets.RUN_ID_INPUT]["runtimeValue"][
            "constant"] == targets.RUN_ID_PLACEHOLDER


# --- other runners and the environment --------------------------------------------------------

def test_flink_from_environment_without_tuning(tmp_path):
    environ = {**_no_env(), "CIFAR10_PIPELINE_ROOT": "s3://minio-bucket/root",
               "CIFAR10_DATA_ROOT": "s3://minio-bucket/data/cifar-10-batches-bin/",
               "CIFAR10_IMAGE": "registry.local/cifar10:env",
               "CIFAR10_BEAM_RUNNER": "flink",
               "CIFAR10_BEAM_JOB_ENDPOINT": "flink-jobserver:8099"}
    job, spec, _ = _compile(tmp_path, ["--image", "registry.local/cifar10:flag", "--no-tflite",
                                       "--no-tune", "--epochs", "2"], environ)
    tasks = _tasks(job)
    assert "Tuner" not in tasks and _tflite_task(job) is None
    assert _upstream(tasks["Trainer"]) == {"Cifar10ExampleGen", "Transform"}
    assert spec["defaultPipelineRoot"] == "s3://minio-bucket/root"
    params = job["runtimeConfig"]["parameterValues"]
    assert params == {"data_root": "s3://minio-bucket/data",  # the batches folder's parent
                      "serving_dir": "s3://minio-bucket/root/serving_model"}
    transform = _executor(job, "Transform")["container"]
    assert transform["image"] == "registry.local/cifar10:flag"  # the flag beats the variable
    assert transform["args"][-7:] == [
        "--runner=PortableRunner", "--job_endpoint=flink-jobserver:8099",
        "--job_server_timeout=86400",  # a Beam job may run longer than a minute
        "--environment_type=EXTERNAL", f"--environment_config={kr.DEFAULT_WORKER_POOL}",
        "--sdk_container_image=registry.local/cifar10:flag", "--sdk_location=container"]


def _args(*argv, **environ):
    base = ["--pipeline-root", ROOT, "--data-root", DATA, "--image", IMAGE]
    return kr.parse_args(base + list(argv), environ)


def test_spark_docker_environment_uses_the_image():
    args = _args("--beam-runner", "spark", "--job-endpoint", "spark-jobserver:8099",
                 "--environment-type", "docker")
    kr.validate(args)
    assert kr.beam_args(args) == [
        "--runner=PortableRunner", "--job_endpoint=spark-jobserver:8099",
        "--job_server_timeout=86400", "--environment_type=DOCKER", f"--environment_config={IMAGE}",
        f"--sdk_container_image={IMAGE}", "--sdk_location=container"]


def test_direct_runner_default_and_passthrough():
    args = _args("--beam-workers", "4", "--beam-arg=--direct_running_mode=multi_threading")
    kr.validate(args)
    assert kr.beam_args(args) == ["--direct_running_mode=multi_processing",
                                  "--direct_num_workers=4",
                                  contract.DIRECT_RUNNER_DEPENDENCIES_ARG,
                                  "--direct_running_mode=multi_threading"]


def test_environment_fills_only_missing_flags():
    args = kr.parse_args(["--region", "flag-region"], {
        "CIFAR10_PIPELINE_ROOT": "gs://env/root", "CIFAR10_DATA_ROOT": "gs://env/data",
        "CIFAR10_IMAGE": "env-image", "CIFAR10_GCP_PROJECT": "env-project",
        "CIFAR10_GCP_REGION": "env-region", "CIFAR10_SERVING_DIR": "gs://env/serving"})
    assert (args.pipeline_root, args.data_root, args.image, args.project, args.region,
            args.serving_dir) == ("gs://env/root", "gs://env/data", "env-image", "env-project",
                                  "flag-region", "gs://env/serving")
    assert args.beam_runner == "direct" and args.schema_file == kr.CONTAINER_SCHEMA_FILE


# --- bad flags --------------------------------------------------------------------------------

BASE = ["--pipeline-root", ROOT, "--data-root", DATA, "--image", IMAGE]


@pytest.mark.parametrize("argv, environ, message", [
    (["--data-root", DATA, "--image", IMAGE], {},
     "--pipeline-root (or CIFAR10_PIPELINE_ROOT) is required"),
    (["--pipeline-root", ROOT, "--data-root", DATA], {}, "--image (or CIFAR10_IMAGE) is required"),
    (["--pipeline-root", ROOT, "--image", IMAGE], {},
     "--data-root (or CIFAR10_DATA_ROOT) is required"),
    (["--pipeline-root", "/tmp/root", "--data-root", DATA, "--image", IMAGE, *DATAFLOW_FLAGS], {},
     "--beam-runner dataflow needs a gs:// --pipeline-root"),
    ([*BASE, "--data-root", "/data", *DATAFLOW_FLAGS], {},
     "--beam-runner dataflow needs a gs:// --data-root"),
    ([*BASE, "--beam-runner", "dataflow"], {},
     "--beam-runner dataflow needs --project (or CIFAR10_GCP_PROJECT) and --region"),
    ([*BASE, "--schema-file", "pipeline/schema/schema.pbtxt"], {},
     "--schema-file 'pipeline/schema/schema.pbtxt' is a relative path, which every step would "
     "take inside its own container; give a gs:// URL or an absolute path as the steps see it"),
    (["--pipeline-root", "root", "--data-root", DATA, "--image", IMAGE], {},
     "--pipeline-root 'root' is a relative path"),
    (BASE, {"CIFAR10_SERVING_DIR": "serving"}, "--serving-dir 'serving' is a relative path"),
    ([*BASE, "--beam-runner", "dataflow", "--project", "p"], {},
     "--beam-runner dataflow needs --region (or CIFAR10_GCP_REGION)"),
    ([*BASE, "--beam-runner", "samza"], {}, "unknown Beam runner 'samza'"),
    (BASE, {"CIFAR10_BEAM_RUNNER": "nemo"}, "unknown Beam runner 'nemo'"),
    ([*BASE, "--beam-runner", "flink"], {}, "--beam-runner flink needs --job-endpoint"),
    ([*BASE, "--beam-runner", "spark", "--job-endpoint", "s:8099", "--environment-type", "loop"],
     {}, "unknown --environment-type 'LOOP'"),
    ([*BASE, "--distribution-strategy", "tpu"], {},
     "argument --distribution-strategy: invalid choice: 'tpu'"),
    ([*BASE, "--pipeline-name", "CIFAR 10"], {}, "--pipeline-name 'CIFAR 10' must be"),
    ([*BASE, "--trainer-gpus", "1"], {},
     "--trainer-gpus needs a count >= 1 and --trainer-gpu-type"),
    ([*BASE, "--epochs", "three"], {}, "argument --epochs: invalid int value: 'three'"),
    ([*BASE, "--runner", "dataflow"], {}, "unrecognized arguments: --runner dataflow"),
    ([*BASE, "--epochs", "0", "--no-tflite"], {}, "epochs must be at least 1"),
])
def test_bad_flags_are_one_clear_line(argv, environ, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(kr.logs, "configure", lambda verbose=False: None)
    code = kr.main(argv + ["--output", str(tmp_path / "spec.json")], environ=environ)
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not (tmp_path / "spec.json").exists()


def test_spec_files_are_written_whole_or_not_at_all(tmp_path, capsys, monkeypatch):
    """A folder as an output is refused before compiling; a write that fails after the other
    file was written leaves neither (the JSON once stayed beside a failed YAML)."""
    monkeypatch.setattr(kr.logs, "configure", lambda verbose=False: None)
    spec = tmp_path / "spec.json"
    assert kr.main([*BASE, "--output", str(spec), "--kfp-output", str(tmp_path)],
                   environ={}) == 2
    assert f"error: --kfp-output {tmp_path} is a folder; name the file to write" in \
        capsys.readouterr().err
    (tmp_path / "a_file").write_text("in the way")
    assert kr.main([*BASE, "--output", str(tmp_path / "a_file" / "spec.json"),
                    "--kfp-output", str(tmp_path / "spec.yaml")], environ={}) == 1
    assert (f"error: cannot write the compiled spec to {tmp_path / 'a_file'}: File exists"
            in capsys.readouterr().err)
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


def test_command_line_error_has_no_traceback(tmp_path):
    env = {**_no_env(), "CIFAR10_IMAGE": IMAGE}
    result = subprocess.run(
        [sys.executable, os.path.join(PROJECT_DIR, "kubeflow_runner.py"), "--pipeline-root",
         str(tmp_path), "--data-root", DATA, "--beam-runner", "dataflow", "--project", "p",
         "--region", "r"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --beam-runner dataflow needs a gs:// --pipeline-root (Dataflow workers cannot "
        f"see '{tmp_path}')"]
    assert "Traceback" not in result.stderr and not os.listdir(tmp_path)


def test_help_names_every_environment_variable():
    result = subprocess.run([sys.executable, os.path.join(PROJECT_DIR, "kubeflow_runner.py"),
                             "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    help_text = " ".join(result.stdout.split())
    for variable in kr.ENV_VARS.values():
        assert variable in help_text


@pytest.mark.parametrize("runner_flags", [
    ("--beam-runner", "flink", "--job-endpoint", "flink-jobserver:8099"),
    ("--beam-runner", "spark", "--job-endpoint", "spark-jobserver:8099",
     "--environment-type", "docker"),
    ("--beam-runner", "dataflow", "--project", "p", "--region", "us-central1"),
])
def test_cluster_runners_stage_no_ephemeral_package(runner_flags):
    """TFX builds and stages a `tfx` sdist per Beam step unless the args name the workers' image."""
    from tfx.utils import dependency_utils

    args = _args(*runner_flags)
    kr.validate(args)
    beam_args = kr.beam_args(args)
    assert dependency_utils.make_beam_dependency_flags(beam_args) == beam_args
