"""Real multi-worker Trainer runs: Transform output built once, workers as separate processes.

Each worker is a child process (multi_worker_trainer.py beside this file) that runs TFX's own
Trainer executor with TF_CONFIG set, as a Vertex AI or Kubeflow training job would; no mocks.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.configs import PROJECT_DIR

WORKER_SCRIPT = Path(__file__).with_name("multi_worker_trainer.py")


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on now, found by binding port 0 (kept open until all are chosen)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("localhost", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class TrainerInputs:
    """URIs of the Examples and TransformGraph artifacts a Trainer reads."""

    examples_uri: str
    split_names: list[str]
    transform_graph_uri: str


def build_trainer_inputs(data_dir: Path, output_dir: Path) -> TrainerInputs:
    """Runs the project's ExampleGen, schema import and Transform once through LocalDagRunner."""
    code = (
        "import json, sys\n"
        "from tfx import v1 as tfx\n"
        "from tfx.orchestration import metadata\n"
        "from components.cifar10_example_gen import Cifar10ExampleGen\n"
        "from pipeline import configs\n"
        "data_dir, out = sys.argv[1], sys.argv[2]\n"
        "example_gen = Cifar10ExampleGen(input_base=data_dir, eval_fraction=0.2)\n"
        "schema_gen = tfx.components.ImportSchemaGen(schema_file=configs.SCHEMA_PATH)\n"
        "transform = tfx.components.Transform(examples=example_gen.outputs['examples'],\n"
        "    schema=schema_gen.outputs['schema'], preprocessing_fn=configs.PREPROCESSING_FN,\n"
        "    materialize=False, disable_statistics=True)\n"
        "p = tfx.dsl.Pipeline(pipeline_name='mw_inputs', pipeline_root=out + '/pipeline_root',\n"
        "    components=[example_gen, schema_gen, transform], enable_cache=False,\n"
        "    metadata_connection_config=metadata.sqlite_metadata_connection_config(\n"
        "        out + '/metadata.sqlite'), beam_pipeline_args=['--direct_num_workers=1'])\n"
        "tfx.orchestration.LocalDagRunner().run(p)\n"
    )
    process = subprocess.run([sys.executable, "-c", code, str(data_dir), str(output_dir)],
                             cwd=PROJECT_DIR, capture_output=True, text=True, timeout=900)
    if process.returncode:
        raise RuntimeError(f"Building the Trainer inputs failed:\n{process.stderr[-6000:]}")
    root = output_dir / "pipeline_root"
    examples = _only(root / "Cifar10ExampleGen" / "examples")
    transform_graph = _only(root / "Transform" / "transform_graph")
    splits = sorted(p.name.removeprefix("Split-") for p in examples.glob("Split-*"))
    return TrainerInputs(str(examples), splits, str(transform_graph))


def _only(parent: Path) -> Path:
    children = [p for p in parent.iterdir() if p.is_dir()]
    if len(children) != 1:
        raise RuntimeError(f"Expected one artifact folder in {parent}, found {children}")
    return children[0]


@dataclass
class WorkerRun:
    """One worker process of a multi-worker Trainer run."""

    index: int
    process: subprocess.Popen
    log_path: Path
    returncode: int | None = None
    seconds: float = 0.0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class ClusterRun:
    """All the workers of one run, and the shared output artifacts they were given."""

    model_uri: Path
    model_run_uri: Path
    workers: list[WorkerRun] = field(default_factory=list)

    def explain(self) -> str:
        return "\n".join(f"--- worker {w.index}: exit {w.returncode} after {w.seconds:.0f}s\n"
                         f"{w.log()[-5000:]}" for w in self.workers)


def start_cluster(inputs: TrainerInputs, work_dir: Path, *, num_workers: int = 2,
                  custom_config: dict | None = None, env: dict | None = None) -> ClusterRun:
    """Starts `num_workers` Trainer executors with one TF_CONFIG cluster on free localhost ports.

    All workers get the same output artifacts, as in a real training job.
    """
    ports = free_ports(num_workers)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    run = ClusterRun(work_dir / "model", work_dir / "model_run")
    spec = {"inputs": inputs.__dict__, "model_uri": str(run.model_uri),
            "model_run_uri": str(run.model_run_uri), "custom_config": custom_config or {}}
    spec_path = work_dir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    for index in range(num_workers):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        child_env = {**os.environ, "TF_CONFIG": json.dumps(tf_config),
                     "TF_CPP_MIN_LOG_LEVEL": "1", "PYTHONPATH": str(PROJECT_DIR),
                     "CUDA_VISIBLE_DEVICES": "", **(env or {})}
        log_path = work_dir / f"worker-{index}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen([sys.executable, str(WORKER_SCRIPT), str(spec_path)],
                                       cwd=PROJECT_DIR, env=child_env, stdout=log,
                                       stderr=subprocess.STDOUT)
        run.workers.append(WorkerRun(index, process, log_path))
    return run


def kill_when_logged(run: ClusterRun, victim: int, marker: str, timeout_s: float) -> float:
    """SIGKILLs worker `victim` once every worker's log holds `marker`; returns the kill time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(marker in w.log() for w in run.workers):
            run.workers[victim].process.kill()
            return time.monotonic()
        if any(w.process.poll() is not None for w in run.workers):
            break
        time.sleep(0.5)
    raise AssertionError(f"No worker logged {marker!r} in time:\n{run.explain()}")


def wait(run: ClusterRun, timeout_s: float) -> ClusterRun:
    """Waits for every worker; kills what is left after `timeout_s` (a hang is a failure)."""
    start = time.monotonic()
    for worker in run.workers:
        left = max(1.0, timeout_s - (time.monotonic() - start))
        try:
            worker.returncode = worker.process.wait(timeout=left)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.returncode = worker.process.wait()
            worker.returncode = worker.returncode if worker.returncode else -9
        worker.seconds = time.monotonic() - start
    return run
