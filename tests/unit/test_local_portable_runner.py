"""Issue #15: `run --beam-runner portable`, its arguments and its up-front endpoint check.

The real portable run (Beam's job service and worker pool) is tests/e2e/test_beam_portable.py.
"""
from __future__ import annotations

import socket
import time

import pytest

from benchmarks.local_cluster.multi_worker import free_ports
from cli import logs, options
from cli.main import main
from pipeline import beam


@pytest.fixture(autouse=True)
def _keep_pytest_logging(monkeypatch):
    monkeypatch.setattr(logs, "configure", lambda verbose=False: None)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_portable_args_are_what_flink_and_spark_compile_to_endpoints_and_image_aside():
    local = beam.local_portable_args("jobs:8099", "pool:50000")
    compiled = beam.portable_args(job_endpoint="jobs:8099", environment_type="EXTERNAL",
                                  image="registry/cifar10-tfx:1",
                                  environment_config="pool:50000")
    assert local == [arg for arg in compiled if not arg.startswith("--sdk_container_image=")]
    assert local[:5] == ["--runner=PortableRunner", "--job_endpoint=jobs:8099",
                         f"--job_server_timeout={beam.PORTABLE_JOB_TIMEOUT_S}",
                         "--environment_type=EXTERNAL", "--environment_config=pool:50000"]


def test_the_flags_map_onto_beam_args_and_extra_args_come_last():
    args = options.local_beam_args(beam.RUNNER_PORTABLE, "jobs:8099", None,
                                   ("--experiments=x",))
    assert f"--environment_config={beam.DEFAULT_WORKER_POOL}" in args
    assert args[-1] == "--experiments=x"
    assert options.local_beam_args(beam.RUNNER_DIRECT, None, None, ("--a=1",)) == ("--a=1",)


@pytest.mark.parametrize("argv, message", [
    (["run", "--beam-runner", "portable"], "--beam-runner portable needs --job-endpoint"),
    (["run", "--job-endpoint", "h:1"], "--job-endpoint and --environment-config need"),
    (["run", "--beam-runner", "flink"], "argument --beam-runner: invalid choice: 'flink'"),
])
def test_flag_mistakes_are_usage_errors(argv, message, capsys, tmp_path):
    assert main([*argv, "--output-dir", str(tmp_path / "out")]) == 2
    assert message in _error_line(capsys)


def test_endpoints_are_found_in_user_given_args_too():
    found = beam.endpoints(["--runner=PortableRunner", "--job_endpoint=j:1",
                            "--environment_type=EXTERNAL", "--environment_config=w:2"])
    assert sorted(found.values()) == ["j:1", "w:2"]
    assert beam.endpoints(["--direct_num_workers=2"]) == {}
    assert beam.endpoints(["--runner=PortableRunner", "--job_endpoint=j:1",
                           "--environment_type=DOCKER", "--environment_config=img"]) \
        == {"job endpoint (--job-endpoint)": "j:1"}


def test_reachable_and_unreachable_endpoints():
    listener = socket.create_server(("localhost", 0))
    try:
        live = f"localhost:{listener.getsockname()[1]}"
        dead = f"localhost:{free_ports(1)[0]}"
        args = beam.local_portable_args(live, dead)
        start = time.monotonic()
        problems = beam.unreachable_endpoints(args)
        assert time.monotonic() - start < 5
        assert len(problems) == 1 and dead in problems[0] and "worker pool" in problems[0]
        assert beam.unreachable_endpoints(beam.local_portable_args(live, live)) == []
    finally:
        listener.close()


def test_run_stops_before_anything_when_the_worker_pool_is_down(capsys, tmp_path):
    listener = socket.create_server(("localhost", 0))
    try:
        jobs = f"localhost:{listener.getsockname()[1]}"
        dead = f"localhost:{free_ports(1)[0]}"
        data = tmp_path / "data"
        data.mkdir()
        code = main(["run", "--data-dir", str(data), "--output-dir", str(tmp_path / "out"),
                     "--beam-runner", "portable", "--job-endpoint", jobs,
                     "--environment-config", dead])
    finally:
        listener.close()
    assert code == 1
    line = _error_line(capsys)
    assert f"cannot reach the Beam SDK worker pool (--environment-config) at {dead}" in line
    assert not (tmp_path / "out").exists()
