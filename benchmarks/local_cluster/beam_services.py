"""Beam's own portable job service and SDK worker pool, as real local processes.

The job service (local_job_service_main) plays a Flink or Spark job server; the worker pool
(worker_pool_main) plays the Beam SDK sidecar of a task manager (environment_type=EXTERNAL). Both
are started on free localhost ports and always stopped.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.local_cluster.multi_worker import free_ports
from pipeline.configs import PROJECT_DIR


@dataclass
class BeamServices:
    """host:port of the job service and the worker pool, and the processes behind them."""

    job_endpoint: str
    worker_pool: str
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def explain(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
                         for log in self.logs)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def service_env() -> dict[str, str]:
    """The venv's python first on PATH (the worker pool starts `python` for each SDK harness;
    another one fails only as a Deadline Exceeded in the client) and the project importable."""
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(PROJECT_DIR), "TF_CPP_MIN_LOG_LEVEL": "2"}


def wait_for_port(address: str, timeout_s: float, process: subprocess.Popen) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The service for {address} exited with {process.returncode}")
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"Nothing listens on {address} after {timeout_s:.0f}s")


def start_beam_services(log_dir: Path, startup_timeout_s: float = 90) -> BeamServices:
    job_port, pool_port = free_ports(2)
    services = BeamServices(f"localhost:{job_port}", f"localhost:{pool_port}")
    commands = {
        "job_service": [sys.executable, "-m",
                        "apache_beam.runners.portability.local_job_service_main",
                        f"--port={job_port}", f"--staging_dir={log_dir / 'staging'}"],
        "worker_pool": [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                        f"--service_port={pool_port}"],
    }
    try:
        for name, command in commands.items():
            log_path = log_dir / f"{name}.log"
            with log_path.open("w") as log:
                services.processes.append(subprocess.Popen(
                    command, cwd=PROJECT_DIR, env=service_env(), stdout=log,
                    stderr=subprocess.STDOUT))
            services.logs.append(log_path)
        wait_for_port(services.job_endpoint, startup_timeout_s, services.processes[0])
        wait_for_port(services.worker_pool, startup_timeout_s, services.processes[1])
    except BaseException:
        services.stop()
        raise
    return services
