"""`cifar10-tfx compile-kfp`: the pipeline for Kubeflow Pipelines 2.x and Vertex AI (runs nothing).

    cifar10-tfx compile-kfp --pipeline-root gs://BUCKET/cifar10/root \\
        --data-root gs://BUCKET/cifar10/data --image REGISTRY/cifar10-tfx:TAG
    cifar10-tfx compile-kfp ... --beam-runner dataflow --project PROJECT --region REGION

The DAG is the one `cifar10-tfx run` runs (pipeline.pipeline.create_pipeline), compiled with TFX's
KubeflowV2DagRunner. Two files come out: --output, a PipelineJob JSON for Vertex AI
(aiplatform.PipelineJob(template_path=...)), and --kfp-output, the same PipelineSpec as YAML for a
KFP 2.x cluster (UI upload or kfp.Client().create_run_from_pipeline_package). ML Metadata is the
orchestrator's own; no connection is compiled in. Every location comes from a flag or from its
CIFAR10_* environment variable (the flag wins). See docs/kubeflow.md.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

import click

from cli import core, logs, options, targets
from cli.core import Command, Float, Int, Option, usage_error
from modules import contract, urls
from pipeline import beam, configs

# Where the Dockerfile puts the sources (WORKDIR /pipeline): the schema as the image holds it.
CONTAINER_SCHEMA_FILE = "/pipeline/pipeline/schema/schema.pbtxt"
# Values that can be changed per run, at submission, without compiling again.
RUNTIME_PARAMETERS = ("data_root", "serving_dir", "tflite_dir")
DEFAULT_WORKER_POOL = beam.DEFAULT_WORKER_POOL
DEFAULT_OUTPUT = "cifar10_pipeline.json"
PROG = "kubeflow_runner.py"
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

# PipelineConfig settings -> this command's flags, for error messages.
RENAMED = {"data_root": "--data-root", "schema_path": "--schema-file", "gcp_project": "--project",
           "gcp_region": "--region"}

LOCATIONS = "locations (gs://... on Vertex AI and Dataflow)"
TRAINING = "training and evaluation (fixed at compile time)"
POD = ("the Trainer's pod (empty: the cluster's defaults), or with --trainer-workers > 1 its "
       "Vertex AI replicas")
BEAM = "Apache Beam (ExampleGen, StatisticsGen, Transform, Evaluator)"


def _option(section: str):
    def option(*args: Any, **kwargs: Any):
        return click.option(*args, cls=Option, section=section, **kwargs)
    return option


_where, _pod, _beam = _option(LOCATIONS), _option(POD), _option(BEAM)


@click.command("compile-kfp", cls=Command,
               help="Compile the pipeline for Kubeflow Pipelines 2.x and Vertex AI (runs "
                    "nothing): a PipelineJob JSON (--output) and the same PipelineSpec as YAML "
                    "(--kfp-output). Every location comes from a flag or from its CIFAR10_* "
                    "environment variable (the flag wins). See docs/kubeflow.md.",
               short_help="compile the pipeline for Kubeflow Pipelines and Vertex AI")
@_where("--pipeline-root", help="artifacts of every run; required "
        f"(env {ENV_VARS['pipeline_root']})")
@_where("--data-root", help=f"folder holding {contract.BATCHES_DIR}/; required; a runtime "
        f"parameter (env {ENV_VARS['data_root']})")
@_where("--serving-dir", help="TF Serving model base path; a runtime parameter (default "
        f"<pipeline-root>/{contract.SERVING_BASE_DIR}, env {ENV_VARS['serving_dir']})")
@_where("--tflite-dir", help="where .tflite versions go; a runtime parameter (default "
        f"<pipeline-root>/{contract.TFLITE_BASE_DIR}, env {ENV_VARS['tflite_dir']})")
@_where("--image", help="the pipeline image (see Dockerfile) every step runs in; required "
        f"(env {ENV_VARS['image']})")
@_where("--schema-file", help="the curated schema as the steps see it: its path in the image "
        f"or a gs:// copy (default {CONTAINER_SCHEMA_FILE}, env {ENV_VARS['schema_file']})")
@_where("--output", default=DEFAULT_OUTPUT, help="the compiled PipelineJob JSON (Vertex AI)")
@_where("--kfp-output", help="the same PipelineSpec as YAML, for a KFP 2.x cluster "
        "(default: --output with .yaml)")
@_where("--target", default=contract.TARGET_VERTEX, help=targets.TARGET_HELP)
@_where("--cache-examples", is_flag=True,
        help=f"{contract.TARGET_KFP} target: let KFP cache the CIFAR-10 ExampleGen by its "
             "--data-root path (and so Transform, the Tuner's search and the Trainer after it), "
             "for a data root whose path names one fixed copy of the data, e.g. "
             "gs://BUCKET/cifar10/2026-11-30; by default it runs on every run, since KFP cannot "
             "see new files under an unchanged path")
@_where("--pipeline-name", help="lower case letters, digits and '-' (default "
        f"{contract.PIPELINE_NAME}, env {ENV_VARS['pipeline_name']})")
@options.training_options(TRAINING)
@_pod("--trainer-cpu", type=Float(positive=True, why=" (leave it out for the cluster's default)"),
      help="vCPU limit")
@_pod("--trainer-memory",
      type=Float(positive=True, why=" GiB (leave it out for the cluster's default)"),
      help="memory limit in GiB")
@_pod("--trainer-gpus", type=Int(0), default=0, help="number of GPUs")
@_pod("--trainer-gpu-type", help="e.g. NVIDIA_TESLA_T4 (Vertex AI) or nvidia.com/gpu (KFP)")
@_pod("--trainer-machine-type", default=configs.DEFAULT_TRAINER_MACHINE_TYPE,
      help="--trainer-workers > 1: the machine type of every replica (instead of --trainer-cpu, "
           "--trainer-memory and --trainer-gpus)")
@_beam("--beam-runner", help=f"{', '.join(beam.BEAM_RUNNERS)} (default {beam.RUNNER_DIRECT}: "
       f"inside each step's pod; env {ENV_VARS['beam_runner']})")
@options.beam_options(BEAM, "direct: worker processes per pod (0: one per core)",
                      "an extra Beam pipeline argument, repeatable, added last "
                      "(e.g. --beam-arg=--disk_size_gb=50)")
@_beam("--project", help="dataflow and --trainer-workers > 1: Google Cloud project "
       f"(env {ENV_VARS['project']})")
@_beam("--region", help="dataflow and --trainer-workers > 1: region, e.g. us-central1 "
       f"(env {ENV_VARS['region']})")
@_beam("--temp-location",
       help=f"dataflow: gs:// scratch space (default <pipeline-root>/{beam.BEAM_TEMP_DIR})")
@_beam("--service-account",
       help=f"dataflow: worker service account e-mail (env {ENV_VARS['service_account']})")
@_beam("--machine-type", help="dataflow: worker machine type, e.g. n1-standard-4")
@_beam("--max-num-workers", type=Int(1), help="dataflow: autoscaling limit")
@_beam("--job-endpoint", help="flink/spark: the Beam job server, host:8099 "
       f"(env {ENV_VARS['job_endpoint']})")
@_beam("--environment-type", default="EXTERNAL", type=str.upper,
       help="flink/spark: how SDK workers start: " + ", ".join(beam.ENVIRONMENT_TYPES))
@_beam("--environment-config", help="flink/spark: EXTERNAL: worker pool address (default "
       f"{beam.DEFAULT_WORKER_POOL}); DOCKER: image (default --image)")
@click.option("--verbose", is_flag=True, help="show TensorFlow and TFX logs")
@click.pass_context
def compile_kfp(ctx: click.Context, **params: Any) -> int:
    environ = (ctx.obj or {}).get("environ")
    args = _namespace(params, os.environ if environ is None else environ)
    validate(args)
    output_paths(args)
    logs.configure(verbose=args.verbose)
    try:
        job = compile_pipeline(args)
    except click.ClickException:
        raise
    except Exception as error:  # noqa: BLE001 - one line instead of TFX's traceback
        hint = ""
        if "artifact type name" in str(error) and not args.no_tflite:
            hint = (" (KFP takes custom artifact types named like 'project.TypeName'; "
                    "--no-tflite compiles without the TFLite converter)")
        raise core.Failure(f"compiling the pipeline failed: {type(error).__name__}: "
                           f"{error}{hint}") from None
    try:
        output, kfp_output = write_outputs(job, args)
    except OSError as error:  # name the path, not the exception class
        raise core.Failure(f"cannot write the compiled spec to {error.filename}: "
                           f"{error.strerror or error}") from None
    if args.trainer_workers > 1:
        print(f"Trainer: a Vertex AI custom job of {args.trainer_workers} replicas (a chief and "
              f"{args.trainer_workers - 1} workers, {args.trainer_machine_type}, the image) in "
              f"{args.project}/{args.region}.")
    elif args.distribution_strategy == contract.STRATEGY_MULTI_WORKER:
        click.echo("note: multi_worker trains in one pod here (one worker); --trainer-workers N "
                   "runs N replicas on Vertex AI; see docs/scale-out.md.", err=True)
    tasks = sorted(job["pipelineSpec"]["root"]["dag"]["tasks"])
    values = runtime_parameter_values(args)
    print(f"Compiled {len(tasks)} steps ({', '.join(tasks)}), image {args.image}.")
    if output:
        print(f"  Vertex AI PipelineJob: {output}")
    print(f"  KFP 2.x PipelineSpec:  {kfp_output}")
    print(f"  pipeline root {args.pipeline_root}; Beam runner {args.beam_runner}; runtime "
          f"parameters: {', '.join(f'{k}={v}' for k, v in values.items())}")
    return core.EXIT_OK


def _namespace(params: Mapping[str, Any], environ: Mapping[str, str]) -> argparse.Namespace:
    """The parsed flags, with CIFAR10_* variables filling the locations no flag gave."""
    args = argparse.Namespace(**params)
    for name, variable in ENV_VARS.items():
        if getattr(args, name) in (None, "") and environ.get(variable):
            setattr(args, name, environ[variable])
    args.beam_runner = (args.beam_runner or beam.RUNNER_DIRECT).lower()
    args.schema_file = args.schema_file or CONTAINER_SCHEMA_FILE
    args.pipeline_name = args.pipeline_name or contract.PIPELINE_NAME
    return args


def parse_args(argv: Sequence[str] | None = None,
               environ: Mapping[str, str] | None = None) -> argparse.Namespace:
    """The flags of compile-kfp as a namespace, without compiling (a usage error raises)."""
    with compile_kfp.make_context("compile-kfp", list(argv or [])) as ctx:
        return _namespace(ctx.params, os.environ if environ is None else environ)


def _required(args: argparse.Namespace, name: str, example: str) -> str:
    value = getattr(args, name)
    if not value:
        raise usage_error(f"--{name.replace('_', '-')} (or {ENV_VARS[name]}) is required, "
                          f"e.g. {example}")
    return value


def validate(args: argparse.Namespace) -> None:
    """Everything the compiler would take silently but a cluster would reject or lose."""
    if targets.target_error(args.target):
        raise usage_error(targets.target_error(args.target))
    if args.cache_examples and args.target != contract.TARGET_KFP:
        raise usage_error(f"--cache-examples is for --target {contract.TARGET_KFP}: Vertex AI "
                          "already caches the ExampleGen by its files' fingerprint")
    _required(args, "pipeline_root", "gs://BUCKET/cifar10/pipeline_root")
    _required(args, "data_root", "gs://BUCKET/cifar10/data")
    _required(args, "image", "us-docker.pkg.dev/PROJECT/REPO/cifar10-tfx:TAG")
    for name in ("pipeline_root", "data_root", "serving_dir", "tflite_dir", "schema_file"):
        value = getattr(args, name)
        if value and not urls.is_url(value) and not posixpath.isabs(value):
            raise usage_error(f"--{name.replace('_', '-')} {value!r} is a relative path, which "
                              "every step would take inside its own container; give a gs:// "
                              "URL or an absolute path as the steps see it")
    if args.beam_runner not in beam.BEAM_RUNNERS:
        raise usage_error(f"unknown Beam runner {args.beam_runner!r}: choose one of "
                          f"{', '.join(beam.BEAM_RUNNERS)}")
    if not _PIPELINE_NAME.match(args.pipeline_name):
        raise usage_error(f"--pipeline-name {args.pipeline_name!r} must be lower case letters, "
                          "digits and '-', starting with a letter")
    if args.trainer_gpus < 0 or (args.trainer_gpus and not args.trainer_gpu_type):
        raise usage_error("--trainer-gpus needs a count >= 1 and --trainer-gpu-type")
    if args.trainer_workers > 1 and args.target == contract.TARGET_VERTEX:
        _validate_trainer_job(args)
    if args.beam_runner == beam.RUNNER_DATAFLOW:
        for flag, value in (("--pipeline-root", args.pipeline_root),
                            ("--data-root", args.data_root),
                            ("--temp-location", args.temp_location or args.pipeline_root)):
            if not value.startswith("gs://"):
                raise usage_error(f"--beam-runner dataflow needs a gs:// {flag} (Dataflow "
                                  f"workers cannot see {value!r})")
        missing = [f"--{name} (or {ENV_VARS[name]})" for name in ("project", "region")
                   if not getattr(args, name)]
        if missing:
            raise usage_error(f"--beam-runner dataflow needs {' and '.join(missing)}")
    if args.beam_runner in beam.PORTABLE_RUNNERS:
        if not args.job_endpoint:
            raise usage_error(f"--beam-runner {args.beam_runner} needs --job-endpoint (or "
                              f"{ENV_VARS['job_endpoint']}): the Beam job server, e.g. "
                              f"{args.beam_runner}-jobserver:8099")
        if args.environment_type not in beam.ENVIRONMENT_TYPES:
            raise usage_error(f"unknown --environment-type {args.environment_type!r}: choose "
                              f"one of {', '.join(beam.ENVIRONMENT_TYPES)}")
        if args.environment_type == "PROCESS" and not args.environment_config:
            raise usage_error("--environment-type PROCESS needs --environment-config "
                              "(a JSON command, see the Beam docs)")
    # The settings `run` shares, checked by the same rules before TFX is even imported.
    options.build_config(renamed=RENAMED, target=args.target, pipeline_name=args.pipeline_name,
                         beam_workers=args.beam_workers, **trainer_job_settings(args),
                         **options.training_settings(vars(args)))


def _validate_trainer_job(args: argparse.Namespace) -> None:
    """--trainer-workers > 1 on Vertex AI: where the custom job runs, and no pod-only flags."""
    missing = [f"--{name} (or {ENV_VARS[name]})" for name in ("project", "region")
               if not getattr(args, name)]
    if missing:
        raise usage_error(f"--trainer-workers {args.trainer_workers} needs "
                          f"{' and '.join(missing)}: the Vertex AI custom training job runs "
                          "there")
    pod_only = [flag for flag, value in (("--trainer-cpu", args.trainer_cpu),
                                         ("--trainer-memory", args.trainer_memory),
                                         ("--trainer-gpus", args.trainer_gpus)) if value]
    if pod_only:
        raise usage_error(f"{', '.join(pod_only)} size the Trainer's pod; with --trainer-workers "
                          f"{args.trainer_workers} every replica is a --trainer-machine-type "
                          f"machine ({args.trainer_machine_type})")


def trainer_job_settings(args: argparse.Namespace) -> dict[str, Any]:
    """PipelineConfig settings of the Trainer's Vertex AI custom job (used when replicas > 1)."""
    return {"trainer_machine_type": args.trainer_machine_type, "gcp_project": args.project,
            "gcp_region": args.region, "image": args.image}


def beam_args(args: argparse.Namespace) -> list[str]:
    """The Beam pipeline arguments every Beam-based step gets, --beam-arg ones last."""
    if args.beam_runner == beam.RUNNER_DIRECT:
        base = beam.direct_args(args.beam_workers)
    elif args.beam_runner == beam.RUNNER_DATAFLOW:
        base = beam.dataflow_args(
            project=args.project, region=args.region, pipeline_root=args.pipeline_root,
            image=args.image, temp_location=args.temp_location,
            service_account=args.service_account, machine_type=args.machine_type,
            max_num_workers=args.max_num_workers)
    else:
        base = beam.portable_args(job_endpoint=args.job_endpoint,
                                  environment_type=args.environment_type, image=args.image,
                                  environment_config=args.environment_config)
    return beam.with_extra(base, args.beam_arg)


def runtime_parameter_values(args: argparse.Namespace) -> dict[str, str]:
    """Default values of the runtime parameters: what a run uses unless the submission says."""
    data_root = args.data_root.rstrip("/")
    if data_root.rsplit("/", 1)[-1] == contract.BATCHES_DIR:  # the batches folder itself
        data_root = data_root.rsplit("/", 1)[0]
    values = {
        "data_root": data_root,
        "serving_dir": args.serving_dir or beam.join(args.pipeline_root,
                                                     contract.SERVING_BASE_DIR),
        "tflite_dir": args.tflite_dir or beam.join(args.pipeline_root, contract.TFLITE_BASE_DIR),
    }
    if args.no_tflite:  # nothing reads it; a parameter nobody uses would only confuse
        del values["tflite_dir"]
    return values


def config_from_args(args: argparse.Namespace):
    """The PipelineConfig; locations that are runtime parameters get a RuntimeParameter."""
    from tfx import v1 as tfx

    parameters = {name: tfx.dsl.experimental.RuntimeParameter(name=name, ptype=str,
                                                               default=value)
                  for name, value in runtime_parameter_values(args).items()}
    return options.build_config(
        renamed=RENAMED,
        target=args.target,
        pipeline_name=args.pipeline_name,
        pipeline_root=args.pipeline_root,
        beam_workers=args.beam_workers,
        beam_args=tuple(beam_args(args)),
        **options.training_settings(vars(args)),
        **trainer_job_settings(args),
        schema_path=args.schema_file,
        **parameters)


def _trainer_resources(args: argparse.Namespace):
    if not (args.trainer_cpu or args.trainer_memory or args.trainer_gpus):
        return None
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec()
    # Both the numeric fields (Vertex AI) and their newer string twins (KFP 2.x backends).
    if args.trainer_cpu:
        spec.cpu_limit = args.trainer_cpu
        spec.resource_cpu_limit = f"{args.trainer_cpu:g}"
    if args.trainer_memory:  # GiB; the numeric field counts decimal GB, as KFP's SDK converts
        spec.memory_limit = args.trainer_memory * 2**30 / 1e9
        spec.resource_memory_limit = f"{args.trainer_memory:g}Gi"
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


def kfp_pipeline_spec(job: dict, pipeline_root: str, cache_examples: bool = False) -> dict:
    """The PipelineSpec alone, as KFP 2.x clusters take it, with the pipeline root as default:
    what the `kfp` target's spec never caches, whichever target wrote it (the `vertex` target's
    YAML may be uploaded to a KFP cluster too)."""
    spec = copy.deepcopy(job["pipelineSpec"])
    targets.never_cache(spec, targets.uncached_tasks(contract.TARGET_KFP, cache_examples))
    return {**spec, "defaultPipelineRoot": pipeline_root}


def compile_pipeline(args: argparse.Namespace) -> dict:
    """Builds the DAG and compiles it; returns the PipelineJob dict (also written to files)."""
    from tfx import v1 as tfx

    from pipeline import pipeline

    config = config_from_args(args)
    # No metadata config: KFP/Vertex run their own MLMD.
    dag = pipeline.create_pipeline(config, target=args.target)
    resources = _trainer_resources(args)
    if resources is not None:
        trainer = next(c for c in dag.components if c.id == contract.TRAINER_NODE)
        trainer.with_platform_config(resources)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=args.image, use_pipeline_spec_2_1=True))
    parameters = runtime_parameter_values(args)
    job = runner.run(dag, parameter_values=parameters, write_out=False)
    return targets.finish(finish_spec(job, args, parameters), args.target, args.cache_examples)


def output_paths(args: argparse.Namespace) -> tuple[str, str]:
    """(--output, --kfp-output) as absolute paths; a usage error for what cannot be written
    there, checked before the (slow) compile."""
    output = os.path.abspath(args.output)
    kfp_output = os.path.abspath(args.kfp_output or os.path.splitext(output)[0] + ".yaml")
    if output == kfp_output:
        raise usage_error("--output and --kfp-output must be different files")
    for flag, path in (("--output", output), ("--kfp-output", kfp_output)):
        if os.path.isdir(path):
            raise usage_error(f"{flag} {path} is a folder; name the file to write")
    return output, kfp_output


def write_outputs(job: dict, args: argparse.Namespace) -> tuple[str, str]:
    """Writes the spec file(s) whole or not at all: each goes to a temporary file beside it,
    renamed into place only once every one is written."""
    import yaml

    output, kfp_output = output_paths(args)
    header = (f"# {args.pipeline_name} pipeline for KFP 2.x, compiled by cifar10-tfx "
              f"compile-kfp ({job['pipelineSpec'].get('sdkVersion', 'tfx')}).\n")
    texts = {kfp_output: header + yaml.safe_dump(
        kfp_pipeline_spec(job, args.pipeline_root, args.cache_examples), sort_keys=True)}
    if args.target == contract.TARGET_KFP:  # the PipelineSpec YAML alone
        output = ""
    else:
        texts[output] = json.dumps(job, indent=2, sort_keys=True) + "\n"
    written: list[str] = []
    try:
        for path, text in texts.items():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(f"{path}.tmp", "w") as f:
                written.append(f"{path}.tmp")
                f.write(text)
        for path in texts:
            os.replace(f"{path}.tmp", path)
    finally:
        for temporary in written:
            if os.path.exists(temporary):
                os.remove(temporary)
    return output, kfp_output


def main(argv: Sequence[str] | None = None,
         environ: Mapping[str, str] | None = None) -> int:
    """`python kubeflow_runner.py ...`: compile-kfp on its own; returns the exit code."""
    return core.invoke(compile_kfp, argv, PROG, obj={"environ": environ})
