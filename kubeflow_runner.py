"""Compiles the CIFAR-10 pipeline for Kubeflow Pipelines 2.x and Vertex AI Pipelines (runs nothing).

    python kubeflow_runner.py --pipeline-root gs://BUCKET/cifar10/root \\
        --data-root gs://BUCKET/cifar10/data --image REGISTRY/cifar10-tfx:TAG
    python kubeflow_runner.py ... --beam-runner dataflow --project PROJECT --region REGION

The DAG is the one local_runner.py runs (pipeline.pipeline.create_pipeline), compiled with TFX's
KubeflowV2DagRunner. Two files come out: --output, a PipelineJob JSON for Vertex AI
(aiplatform.PipelineJob(template_path=...)), and --kfp-output, the same PipelineSpec as YAML for a
KFP 2.x cluster (UI upload or kfp.Client().create_run_from_pipeline_package). ML Metadata is the
orchestrator's own; no connection is compiled in. Every location comes from a flag or from its
CIFAR10_* environment variable (the flag wins). See docs/kubeflow.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Mapping, Optional, Sequence

from pipeline import configs, flags, logs

BEAM_RUNNERS = ("direct", "dataflow", "flink", "spark")
ENVIRONMENT_TYPES = ("EXTERNAL", "DOCKER", "PROCESS")
# Where the Dockerfile puts the sources (WORKDIR /pipeline): the schema as the image holds it.
CONTAINER_SCHEMA_FILE = "/pipeline/pipeline/schema/schema.pbtxt"
# Values that can be changed per run, at submission, without compiling again.
RUNTIME_PARAMETERS = ("data_root", "serving_dir", "tflite_dir")
# A Beam worker-pool sidecar next to each Flink/Spark task manager (environment_type=EXTERNAL).
DEFAULT_WORKER_POOL = "localhost:50000"
# Vertex AI and KFP both want pipeline names like this.
_PIPELINE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,127}$")

# flag destination -> environment variable read when the flag is not given
ENV_VARS = {
    "pipeline_root": "CIFAR10_PIPELINE_ROOT",
    "data_root": "CIFAR10_DATA_ROOT",
    "serving_dir": "CIFAR10_SERVING_DIR",
    "tflite_dir": "CIFAR10_TFLITE_DIR",
    "image": "CIFAR10_IMAGE",
    "pipeline_name": "CIFAR10_PIPELINE_NAME",
    "schema_file": "CIFAR10_SCHEMA_FILE",
    "beam_runner": "CIFAR10_BEAM_RUNNER",
    "project": "CIFAR10_GCP_PROJECT",
    "region": "CIFAR10_GCP_REGION",
    "service_account": "CIFAR10_SERVICE_ACCOUNT",
    "job_endpoint": "CIFAR10_BEAM_JOB_ENDPOINT",
}


class UsageError(Exception):
    """A bad flag combination; main() turns it into one `error: ...` line and exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise UsageError(f"{message} (see --help)")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one and the help text does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or action.default == [] \
                or "default" in text:
            return text
        return super()._get_help_string(action)


_default = flags.default


def parse_args(argv: Optional[Sequence[str]] = None,
               environ: Optional[Mapping[str, str]] = None) -> argparse.Namespace:
    env = os.environ if environ is None else environ
    p = _Parser(description=__doc__.split("\n")[0], formatter_class=_Help)
    where = p.add_argument_group("locations (gs://... on Vertex AI and Dataflow)")
    where.add_argument("--pipeline-root", help="artifacts of every run; required "
                       f"(env {ENV_VARS['pipeline_root']})")
    where.add_argument("--data-root", help="folder holding cifar-10-batches-bin/; required; a "
                       f"runtime parameter (env {ENV_VARS['data_root']})")
    where.add_argument("--serving-dir", help="TF Serving model base path; a runtime parameter "
                       f"(default <pipeline-root>/serving_model, env {ENV_VARS['serving_dir']})")
    where.add_argument("--tflite-dir", help="where .tflite versions go; a runtime parameter "
                       f"(default <pipeline-root>/tflite_model, env {ENV_VARS['tflite_dir']})")
    where.add_argument("--image", help="the pipeline image (see Dockerfile) every step runs in; "
                       f"required (env {ENV_VARS['image']})")
    where.add_argument("--schema-file", help="the curated schema as the steps see it: its path "
                       f"in the image or a gs:// copy (default {CONTAINER_SCHEMA_FILE}, env "
                       f"{ENV_VARS['schema_file']})")
    where.add_argument("--output", default="cifar10_pipeline.json",
                       help="the compiled PipelineJob JSON (Vertex AI)")
    where.add_argument("--kfp-output", help="the same PipelineSpec as YAML, for a KFP 2.x "
                       "cluster (default: --output with .yaml)")
    where.add_argument("--pipeline-name", help="lower case letters, digits and '-' (default "
                       f"{configs.PIPELINE_NAME}, env {ENV_VARS['pipeline_name']})")

    train = p.add_argument_group("training and evaluation (fixed at compile time)")
    flags.add_training_flags(train)

    pod = p.add_argument_group("the Trainer's pod (empty: the cluster's defaults)")
    pod.add_argument("--trainer-cpu", type=float, help="vCPU limit")
    pod.add_argument("--trainer-memory", type=float, help="memory limit in GiB")
    pod.add_argument("--trainer-gpus", type=int, default=0, help="number of GPUs")
    pod.add_argument("--trainer-gpu-type", help="e.g. NVIDIA_TESLA_T4 (Vertex AI) or "
                     "nvidia.com/gpu (KFP)")

    beam = p.add_argument_group("Apache Beam (ExampleGen, StatisticsGen, Transform, Evaluator)")
    beam.add_argument("--beam-runner", help=f"{', '.join(BEAM_RUNNERS)} (default direct: inside "
                      f"each step's pod; env {ENV_VARS['beam_runner']})")
    beam.add_argument("--beam-workers", type=int, default=_default("beam_workers"),
                      help="direct: worker processes per pod (0: one per core)")
    beam.add_argument("--project", help="dataflow: Google Cloud project "
                      f"(env {ENV_VARS['project']})")
    beam.add_argument("--region", help=f"dataflow: region, e.g. us-central1 "
                      f"(env {ENV_VARS['region']})")
    beam.add_argument("--temp-location", help="dataflow: gs:// scratch space "
                      "(default <pipeline-root>/beam-temp)")
    beam.add_argument("--service-account", help="dataflow: worker service account e-mail "
                      f"(env {ENV_VARS['service_account']})")
    beam.add_argument("--machine-type", help="dataflow: worker machine type, e.g. n1-standard-4")
    beam.add_argument("--max-num-workers", type=int, help="dataflow: autoscaling limit")
    beam.add_argument("--job-endpoint", help="flink/spark: the Beam job server, host:8099 "
                      f"(env {ENV_VARS['job_endpoint']})")
    beam.add_argument("--environment-type", default="EXTERNAL", type=str.upper,
                      help="flink/spark: how SDK workers start: " + ", ".join(ENVIRONMENT_TYPES))
    beam.add_argument("--environment-config",
                      help=f"flink/spark: EXTERNAL: worker pool address (default "
                      f"{DEFAULT_WORKER_POOL}); DOCKER: image (default --image)")
    beam.add_argument("--beam-arg", action="append", default=[],
                      help="an extra Beam pipeline argument, repeatable, added last "
                      "(e.g. --beam-arg=--disk_size_gb=50)")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow and TFX logs")
    args = p.parse_args(argv)
    for name, variable in ENV_VARS.items():
        if getattr(args, name) in (None, "") and env.get(variable):
            setattr(args, name, env[variable])
    args.beam_runner = (args.beam_runner or "direct").lower()
    args.schema_file = args.schema_file or CONTAINER_SCHEMA_FILE
    args.pipeline_name = args.pipeline_name or configs.PIPELINE_NAME
    return args


def _join(root: str, name: str) -> str:
    return root.rstrip("/") + "/" + name


def _is_gcs(path: Optional[str]) -> bool:
    return bool(path) and path.startswith("gs://")


def _required(args: argparse.Namespace, name: str, example: str) -> str:
    value = getattr(args, name)
    if not value:
        raise UsageError(f"--{name.replace('_', '-')} (or {ENV_VARS[name]}) is required, "
                         f"e.g. {example}")
    return value


def validate(args: argparse.Namespace) -> None:
    """Everything the compiler would take silently but a cluster would reject or lose."""
    _required(args, "pipeline_root", "gs://BUCKET/cifar10/pipeline_root")
    _required(args, "data_root", "gs://BUCKET/cifar10/data")
    _required(args, "image", "us-docker.pkg.dev/PROJECT/REPO/cifar10-tfx:TAG")
    if args.beam_runner not in BEAM_RUNNERS:
        raise UsageError(f"unknown Beam runner {args.beam_runner!r}: choose one of "
                         f"{', '.join(BEAM_RUNNERS)}")
    if not _PIPELINE_NAME.match(args.pipeline_name):
        raise UsageError(f"--pipeline-name {args.pipeline_name!r} must be lower case letters, "
                         "digits and '-', starting with a letter")
    if args.trainer_gpus < 0 or (args.trainer_gpus and not args.trainer_gpu_type):
        raise UsageError("--trainer-gpus needs a count >= 1 and --trainer-gpu-type")
    if args.beam_runner == "dataflow":
        for flag, value in (("--pipeline-root", args.pipeline_root),
                            ("--data-root", args.data_root),
                            ("--temp-location", args.temp_location or args.pipeline_root)):
            if not _is_gcs(value):
                raise UsageError(f"--beam-runner dataflow needs a gs:// {flag} (Dataflow workers "
                                 f"cannot see {value!r})")
        missing = [f"--{name} (or {ENV_VARS[name]})" for name in ("project", "region")
                   if not getattr(args, name)]
        if missing:
            raise UsageError(f"--beam-runner dataflow needs {' and '.join(missing)}")
    if args.beam_runner in ("flink", "spark"):
        if not args.job_endpoint:
            raise UsageError(f"--beam-runner {args.beam_runner} needs --job-endpoint (or "
                             f"{ENV_VARS['job_endpoint']}): the Beam job server, e.g. "
                             f"{args.beam_runner}-jobserver:8099")
        if args.environment_type not in ENVIRONMENT_TYPES:
            raise UsageError(f"unknown --environment-type {args.environment_type!r}: choose one "
                             f"of {', '.join(ENVIRONMENT_TYPES)}")
        if args.environment_type == "PROCESS" and not args.environment_config:
            raise UsageError("--environment-type PROCESS needs --environment-config "
                             "(a JSON command, see the Beam docs)")


def beam_args(args: argparse.Namespace) -> list[str]:
    """The Beam pipeline arguments every Beam-based step gets, --beam-arg ones last."""
    runner = args.beam_runner
    if runner == "direct":
        base = configs.PipelineConfig(beam_workers=args.beam_workers).default_beam_args()
    elif runner == "dataflow":
        base = ["--runner=DataflowRunner",
                f"--project={args.project}",
                f"--region={args.region}",
                f"--temp_location={args.temp_location or _join(args.pipeline_root, 'beam-temp')}",
                # Workers run the pipeline image: this package, the lock, and Beam's boot.
                "--experiments=use_runner_v2",
                f"--sdk_container_image={args.image}",
                "--sdk_location=container"]
        if args.service_account:
            base.append(f"--service_account_email={args.service_account}")
        if args.machine_type:
            base.append(f"--machine_type={args.machine_type}")
        if args.max_num_workers:
            base.append(f"--max_num_workers={args.max_num_workers}")
    else:  # flink, spark: a portable job server of that engine
        config = args.environment_config or (
            args.image if args.environment_type == "DOCKER" else DEFAULT_WORKER_POOL)
        base = ["--runner=PortableRunner",
                f"--job_endpoint={args.job_endpoint}",
                f"--environment_type={args.environment_type}",
                f"--environment_config={config}",
                "--sdk_location=container"]
    return base + list(args.beam_arg)


def config_from_args(args: argparse.Namespace) -> configs.PipelineConfig:
    """The PipelineConfig; locations that are runtime parameters get a RuntimeParameter."""
    from tfx import v1 as tfx

    locations = runtime_parameter_values(args)
    parameters = {name: tfx.dsl.experimental.RuntimeParameter(name=name, ptype=str,
                                                               default=value)
                  for name, value in locations.items()}
    try:
        return configs.PipelineConfig(
            pipeline_name=args.pipeline_name,
            pipeline_root=args.pipeline_root,
            beam_args=tuple(beam_args(args)),
            **flags.training_settings(args),
            schema_path=args.schema_file,
            **parameters)
    except ValueError as error:
        raise UsageError(str(error)) from None


def runtime_parameter_values(args: argparse.Namespace) -> dict[str, str]:
    """Default values of the runtime parameters: what a run uses unless the submission says."""
    data_root = args.data_root.rstrip("/")
    if data_root.rsplit("/", 1)[-1] == configs.BATCHES_DIR:  # the batches folder itself
        data_root = data_root.rsplit("/", 1)[0]
    values = {
        "data_root": data_root,
        "serving_dir": args.serving_dir or _join(args.pipeline_root, "serving_model"),
        "tflite_dir": args.tflite_dir or _join(args.pipeline_root, "tflite_model"),
    }
    if args.no_tflite:  # nothing reads it; a parameter nobody uses would only confuse
        del values["tflite_dir"]
    return values


def _trainer_resources(args: argparse.Namespace):
    if not (args.trainer_cpu or args.trainer_memory or args.trainer_gpus):
        return None
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec()
    # Both the numeric fields (Vertex AI) and their newer string twins (KFP 2.x backends).
    if args.trainer_cpu:
        spec.cpu_limit = args.trainer_cpu
        spec.resource_cpu_limit = f"{args.trainer_cpu:g}"
    if args.trainer_memory:
        spec.memory_limit = args.trainer_memory
        spec.resource_memory_limit = f"{args.trainer_memory:g}G"
    if args.trainer_gpus:
        spec.accelerator.type = spec.accelerator.resource_type = args.trainer_gpu_type
        spec.accelerator.count = args.trainer_gpus
        spec.accelerator.resource_count = str(args.trainer_gpus)
    return spec


def finish_spec(job: dict, args: argparse.Namespace, parameters: Mapping[str, Any]) -> dict:
    """Post-compile fix: runtime parameter defaults.

    KubeflowV2DagRunner puts runtime parameter values only into the PipelineJob's runtimeConfig;
    KFP needs them as defaults in the PipelineSpec itself.
    """
    spec = job["pipelineSpec"]
    definitions = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    for name, value in parameters.items():
        if name in definitions:
            definitions[name]["defaultValue"] = value
            definitions[name]["isOptional"] = True
    return job


def kfp_pipeline_spec(job: dict, pipeline_root: str) -> dict:
    """The PipelineSpec alone, as KFP 2.x clusters take it, with the pipeline root as default."""
    return {**job["pipelineSpec"], "defaultPipelineRoot": pipeline_root}


def compile_pipeline(args: argparse.Namespace) -> dict:
    """Builds the DAG and compiles it; returns the PipelineJob dict (also written to files)."""
    from tfx import v1 as tfx

    from pipeline import pipeline

    config = config_from_args(args)
    dag = pipeline.create_pipeline(config)  # no metadata config: KFP/Vertex run their own MLMD
    resources = _trainer_resources(args)
    if resources is not None:
        trainer = next(c for c in dag.components if c.id == "Trainer")
        trainer.with_platform_config(resources)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=args.image, use_pipeline_spec_2_1=True))
    parameters = runtime_parameter_values(args)
    job = runner.run(dag, parameter_values=parameters, write_out=False)
    return finish_spec(job, args, parameters)


def write_outputs(job: dict, args: argparse.Namespace) -> tuple[str, str]:
    import yaml

    output = os.path.abspath(args.output)
    kfp_output = os.path.abspath(args.kfp_output or os.path.splitext(output)[0] + ".yaml")
    if output == kfp_output:
        raise UsageError("--output and --kfp-output must be different files")
    for path in (output, kfp_output):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(output, "w") as f:
        json.dump(job, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(kfp_output, "w") as f:
        f.write(f"# {args.pipeline_name} pipeline for KFP 2.x, compiled by kubeflow_runner.py "
                f"({job['pipelineSpec'].get('sdkVersion', 'tfx')}).\n")
        yaml.safe_dump(kfp_pipeline_spec(job, args.pipeline_root), f, sort_keys=True)
    return output, kfp_output


def main(argv: Optional[Sequence[str]] = None,
         environ: Optional[Mapping[str, str]] = None) -> int:
    try:
        args = parse_args(argv, environ)
        validate(args)
        logs.configure(verbose=args.verbose)
        job = compile_pipeline(args)
        output, kfp_output = write_outputs(job, args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - one line instead of TFX's traceback
        hint = ""
        if "artifact type name" in str(error) and not args.no_tflite:
            hint = (" (KFP takes custom artifact types named like 'project.TypeName'; "
                    "--no-tflite compiles without the TFLite converter)")
        print(f"error: compiling the pipeline failed: {type(error).__name__}: {error}{hint}",
              file=sys.stderr)
        return 1
    if args.distribution_strategy == "multi_worker":
        print("note: multi_worker trains in one pod here (one worker) unless the Trainer pod "
              "gets a TF_CONFIG; see docs/kubeflow.md.", file=sys.stderr)
    tasks = sorted(job["pipelineSpec"]["root"]["dag"]["tasks"])
    print(f"Compiled {len(tasks)} steps ({', '.join(tasks)}), image {args.image}.")
    print(f"  Vertex AI PipelineJob: {output}")
    print(f"  KFP 2.x PipelineSpec:  {kfp_output}")
    print(f"  pipeline root {args.pipeline_root}; Beam runner {args.beam_runner}; runtime "
          f"parameters: {', '.join(f'{k}={v}' for k, v in runtime_parameter_values(args).items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
