"""The Kubeflow step entrypoint sizes Beam's DirectRunner to the container's CPU limit."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline import container_entrypoint as entry

CORES = entry.worker_count("/nonexistent")  # no cgroup files: every visible core


def _cgroup_v2(tmp_path, cpu_max: str):
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    return str(tmp_path)


def _cgroup_v1(tmp_path, quota: int, period: int = 100000):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return str(tmp_path)


@pytest.mark.parametrize("cpu_max, expected", [
    ("max 100000", None), ("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1)])
def test_cgroup_v2_limit(tmp_path, cpu_max, expected):
    assert entry.cpu_limit(_cgroup_v2(tmp_path, cpu_max)) == expected


@pytest.mark.parametrize("quota, expected", [(-1, None), (100000, 1), (250000, 3)])
def test_cgroup_v1_limit(tmp_path, quota, expected):
    assert entry.cpu_limit(_cgroup_v1(tmp_path, quota)) == expected


def test_automatic_worker_count_becomes_the_limit_and_an_explicit_one_stays(tmp_path):
    root = _cgroup_v2(tmp_path, "100000 100000")  # a 1-CPU pod, whatever the node has
    argv = ["--executor_class_path", "x.Executor", "--direct_running_mode=multi_processing",
            "--direct_num_workers=0"]
    assert entry.fit_beam_workers(argv, root)[-1] == "--direct_num_workers=1"
    explicit = argv[:-1] + ["--direct_num_workers=4"]
    assert entry.fit_beam_workers(explicit, root) == explicit
    (tmp_path / "unlimited").mkdir()
    unlimited = _cgroup_v2(tmp_path / "unlimited", "max 100000")
    assert entry.fit_beam_workers(argv, unlimited)[-1] == f"--direct_num_workers={CORES}"


def test_runs_tfx_entrypoint_with_the_fitted_arguments():
    """`python -m pipeline.container_entrypoint` is TFX's entrypoint: its own usage error shows."""
    result = subprocess.run([sys.executable, "-m", "pipeline.container_entrypoint", "--help"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--executor_class_path" in result.stdout + result.stderr
