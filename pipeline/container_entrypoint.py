"""The command each Kubeflow step runs in the pipeline image: TFX's own entrypoint, with Beam's
DirectRunner sized to the container's CPU limit.

`--direct_num_workers=0` means "one worker per core", and Beam counts the cores of the *node*
(`multiprocessing.cpu_count()`): a pod limited to 2 CPUs on a 64-core node would start 64 worker
processes and spend its quota switching between them. Here 0 becomes the pod's CPU limit, read
from the cgroup (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`) before TFX starts;
a count given at compile time (`--beam-workers N`) is left alone.

    python -m pipeline.container_entrypoint <the arguments of kubeflow_v2_run_executor>
"""
from __future__ import annotations

import math
import os
import runpy
import sys
from collections.abc import Sequence

TFX_ENTRYPOINT = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
AUTO_WORKERS_ARG = "--direct_num_workers=0"
CGROUP_ROOT = "/sys/fs/cgroup"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def cpu_limit(cgroup_root: str = CGROUP_ROOT) -> int | None:
    """Whole CPUs the container may use (rounded up), or None when it has no CPU limit."""
    v2 = _read(os.path.join(cgroup_root, "cpu.max"))  # "max 100000" or "200000 100000"
    if v2:
        quota, _, period = v2.partition(" ")
        if quota == "max":
            return None
        return max(1, math.ceil(int(quota) / int(period or 100000)))
    quota = _read(os.path.join(cgroup_root, "cpu", "cpu.cfs_quota_us"))
    period = _read(os.path.join(cgroup_root, "cpu", "cpu.cfs_period_us"))
    if quota is None or period is None or int(quota) <= 0:
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def worker_count(cgroup_root: str = CGROUP_ROOT) -> int:
    """One Beam worker per CPU the container may use: its limit, at most the visible cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    limit = cpu_limit(cgroup_root)
    return max(1, min(cores or 1, limit or cores or 1))


def fit_beam_workers(argv: Sequence[str], cgroup_root: str = CGROUP_ROOT) -> list[str]:
    """The arguments with an automatic DirectRunner worker count replaced by the CPU limit."""
    if AUTO_WORKERS_ARG not in argv:
        return list(argv)
    fitted = f"--direct_num_workers={worker_count(cgroup_root)}"
    return [fitted if arg == AUTO_WORKERS_ARG else arg for arg in argv]


def main() -> None:
    sys.argv = [TFX_ENTRYPOINT, *fit_beam_workers(sys.argv[1:])]
    runpy.run_module(TFX_ENTRYPOINT, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
