"""Beam pipeline arguments for each runner the Beam-based steps can use.

ExampleGen, StatisticsGen, Transform and the Evaluator run Apache Beam; where they run it is a knob
of the pipeline, not of the command that compiles it, so the argument lists are built here.
"""
from __future__ import annotations

import socket
from collections.abc import Sequence

from pipeline import configs

RUNNER_DIRECT, RUNNER_DATAFLOW, RUNNER_FLINK, RUNNER_SPARK = "direct", "dataflow", "flink", "spark"
BEAM_RUNNERS = (RUNNER_DIRECT, RUNNER_DATAFLOW, RUNNER_FLINK, RUNNER_SPARK)
PORTABLE_RUNNERS = (RUNNER_FLINK, RUNNER_SPARK)  # engines reached through a Beam job server
ENVIRONMENT_TYPES = ("EXTERNAL", "DOCKER", "PROCESS")
# A Beam worker-pool sidecar next to each Flink/Spark task manager (environment_type=EXTERNAL).
DEFAULT_WORKER_POOL = "localhost:50000"
BEAM_TEMP_DIR = "beam-temp"  # Dataflow scratch space inside the pipeline root by default


def join(root: str, name: str) -> str:
    """root/name for local paths and gs://, s3:// URLs alike."""
    return root.rstrip("/") + "/" + name


def direct_args(beam_workers: int) -> list[str]:
    """DirectRunner inside each step's process (or pod)."""
    return configs.PipelineConfig(beam_workers=beam_workers).default_beam_args()


def dataflow_args(*, project: str, region: str, pipeline_root: str, image: str,
                  temp_location: str | None = None, service_account: str | None = None,
                  machine_type: str | None = None,
                  max_num_workers: int | None = None) -> list[str]:
    """Dataflow workers that run the pipeline image: this package, the lock, and Beam's boot."""
    args = ["--runner=DataflowRunner",
            f"--project={project}",
            f"--region={region}",
            f"--temp_location={temp_location or join(pipeline_root, BEAM_TEMP_DIR)}",
            "--experiments=use_runner_v2",
            f"--sdk_container_image={image}",
            "--sdk_location=container"]
    if service_account:
        args.append(f"--service_account_email={service_account}")
    if machine_type:
        args.append(f"--machine_type={machine_type}")
    if max_num_workers:
        args.append(f"--max_num_workers={max_num_workers}")
    return args


# Beam 2.59's PortableRunner gives the job's state and message streams the job-server request
# timeout as their deadline (--job_server_timeout, 60 s by default): every Beam job longer than a
# minute failed with "Deadline Exceeded" (measured: the full-data Evaluator). A day, instead.
PORTABLE_JOB_TIMEOUT_S = 86_400


def portable_args(*, job_endpoint: str, environment_type: str, image: str,
                  environment_config: str | None = None) -> list[str]:
    """A Flink or Spark cluster through its Beam job server (PortableRunner).

    The SDK workers run the pipeline image: started by Beam (DOCKER) or as a worker pool beside
    each task manager (EXTERNAL). Naming it in --sdk_container_image also tells TFX the workers
    already hold this code, so it does not build and stage an ephemeral `tfx` package per step.
    """
    config = environment_config or (image if environment_type == "DOCKER"
                                    else DEFAULT_WORKER_POOL)
    return ["--runner=PortableRunner",
            f"--job_endpoint={job_endpoint}",
            f"--job_server_timeout={PORTABLE_JOB_TIMEOUT_S}",
            f"--environment_type={environment_type}",
            f"--environment_config={config}",
            f"--sdk_container_image={image}",
            "--sdk_location=container"]


def with_extra(base: Sequence[str], extra: Sequence[str]) -> list[str]:
    """User-given arguments go last so that they win over the defaults."""
    return list(base) + list(extra)


# --------------------------------------------------------------------------------------------------
# A local run against a Beam job server (issue #15): the same arguments flink/spark compile to.
RUNNER_PORTABLE = "portable"
LOCAL_BEAM_RUNNERS = (RUNNER_DIRECT, RUNNER_PORTABLE)
ENDPOINT_CHECK_TIMEOUT_S = 5.0


def local_portable_args(job_endpoint: str, environment_config: str) -> list[str]:
    """What `--beam-runner flink/spark` compile to (EXTERNAL worker pool), endpoints aside.

    No pipeline image is named, so TFX stages its own package for the workers; a worker pool
    that runs the pipeline image is named with --beam-arg=--sdk_container_image=IMAGE.
    """
    args = portable_args(job_endpoint=job_endpoint, environment_type="EXTERNAL", image="",
                         environment_config=environment_config)
    return [arg for arg in args if arg != "--sdk_container_image="]


def _arg_value(args: Sequence[str], name: str) -> str | None:
    value = None
    for arg in args:  # the last one wins, as in Beam's own parser
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
    return value


def endpoints(args: Sequence[str]) -> dict[str, str]:
    """The host:port endpoints a portable run needs up front: job server, EXTERNAL worker pool."""
    found = {}
    job_endpoint = _arg_value(args, "job_endpoint")
    if job_endpoint and _arg_value(args, "runner") in ("PortableRunner", None):
        found["job endpoint (--job-endpoint)"] = job_endpoint
    if job_endpoint and _arg_value(args, "environment_type") == "EXTERNAL":
        found["SDK worker pool (--environment-config)"] = (
            _arg_value(args, "environment_config") or DEFAULT_WORKER_POOL)
    return found


def unreachable_endpoints(args: Sequence[str],
                          timeout_s: float = ENDPOINT_CHECK_TIMEOUT_S) -> list[str]:
    """One line per endpoint nobody answers on: checked in seconds before the pipeline starts,
    where Beam itself would only report a Deadline Exceeded minutes into the first stage."""
    problems = []
    for role, address in endpoints(args).items():
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            problems.append(f"the Beam {role} {address!r} is not HOST:PORT")
            continue
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                pass
        except OSError as error:
            problems.append(f"cannot reach the Beam {role} at {host}:{port}: "
                            f"{error.strerror or error}")
    return problems
