"""Issue #16, case 13: Ctrl-C during a run is one line and exit code 130, leaves no empty output
folder and no worker process behind, and the same command run again finishes (resuming from ML
Metadata). Interrupted in the Trainer, and in a Beam stage run by the DirectRunner's worker
processes (multi-processing mode), which once swallowed it or hung."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from cli.interrupted import BEAM_SDK_WORKER
from modules import contract
from tests.support.pipeline_runs import PROJECT_DIR

BRIEF = ("--epochs", "2", "--batch-size", "64", "--no-tune", "--no-tflite",
         "--accuracy-threshold", "0")
QUICK = (*BRIEF, "--beam-workers", "1")
# Two worker processes: the multi-processing mode of the default (--beam-workers 0, one per
# core), at a size that does not depend on the machine.
MULTI_PROCESSING = (*BRIEF, "--beam-workers", "2")


def _start(data_dir: Path, output_dir: Path, log: Path, args: tuple[str, ...]) -> subprocess.Popen:
    """local_runner.py in its own process group, as a terminal runs a foreground job."""
    with open(log, "w") as stderr:
        return subprocess.Popen(
            [sys.executable, str(PROJECT_DIR / "local_runner.py"), "--data-dir", str(data_dir),
             "--output-dir", str(output_dir), *args],
            cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=stderr, text=True,
            start_new_session=True)


@contextlib.contextmanager
def _killed_if_left(run: subprocess.Popen) -> Iterator[None]:
    """A test that fails leaves no run (nor its workers) behind."""
    try:
        yield
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)


def _ctrl_c(run: subprocess.Popen) -> None:
    """What Ctrl-C sends: SIGINT to the whole foreground group."""
    os.killpg(run.pid, signal.SIGINT)
    run.communicate(timeout=300)


def _wait_for(condition, run: subprocess.Popen, log: Path, what: str, limit_s: float = 900):
    deadline = time.monotonic() + limit_s
    while not condition():
        assert run.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.2)


def _assert_one_line(run: subprocess.Popen, log: Path, output_dir: Path,
                     stop: int = signal.SIGINT) -> str:
    stderr = log.read_text()
    # Progress lines carry a time stamp ("12:34:56 I ..."); the outcome is the one other line.
    own = [line for line in stderr.splitlines()
           if line.strip() and not line[:8].replace(":", "").isdigit()]
    assert run.returncode == 128 + stop, stderr[-4000:]  # 130 for SIGINT, 143 for SIGTERM
    assert own == [f"interrupted: nothing was pushed by this run; run the same command again to "
                   f"resume (finished components are reused from "
                   f"{output_dir / contract.METADATA_FILE})"], stderr[-4000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-4000:]
    return stderr


def _assert_the_rerun_finishes(data_dir: Path, output_dir: Path, args: tuple[str, ...]) -> None:
    again = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "local_runner.py"), "--data-dir", str(data_dir),
         "--output-dir", str(output_dir), *args],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=1500)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "Test accuracy:" in again.stdout and "Blessed and pushed version" in again.stdout


def _empty_folders(root: Path) -> list[str]:
    """Empty execution output folders, <node>/<output key>/<execution id> (an artifact's own
    empty subfolders, such as a SavedModel's assets/, are not debris)."""
    return sorted(str(p.relative_to(root)) for p in root.glob("*/*/*")
                  if p.is_dir() and not any(p.iterdir()) and ".system" not in p.parts)


def _beam_workers(pid: int) -> list[psutil.Process]:
    """The Beam SDK worker processes below process `pid` (`python -m BEAM_SDK_WORKER`; the
    /bin/sh -c that starts each holds the module's name inside one argument)."""
    workers = []
    for process in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if BEAM_SDK_WORKER in process.cmdline():
                workers.append(process)
    return workers


def _ignores_ctrl_c(process: psutil.Process) -> bool:
    """True once the worker ignores SIGINT (in /proc): from its start-up, cli/beam_worker_site."""
    try:
        with open(f"/proc/{process.pid}/status") as status:
            ignored = next(line for line in status if line.startswith("SigIgn:"))
    except (OSError, StopIteration):
        return False
    return bool(int(ignored.split()[1], 16) & (1 << (signal.SIGINT - 1)))


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_ctrl_c_during_training_is_one_line_and_the_run_resumes(small_cifar10, tmp_path):
    output_dir, log = tmp_path / "out", tmp_path / "stderr.txt"
    trainer_models = output_dir / contract.PIPELINE_ROOT_DIR / contract.TRAINER_NODE / "model"
    run = _start(small_cifar10, output_dir, log, QUICK)
    with _killed_if_left(run):  # the Trainer has started: its output folder exists
        _wait_for(trainer_models.exists, run, log, "the Trainer's start")
        empty_before = _empty_folders(output_dir / contract.PIPELINE_ROOT_DIR)
        time.sleep(5)
        _ctrl_c(run)
    _assert_one_line(run, log, output_dir)
    # The interrupted Trainer's output folders (empty when it started) are gone; finished
    # components keep theirs (an unused Transform analyzer cache is legitimately empty).
    trainer = [path for path in empty_before if path.startswith(f"{contract.TRAINER_NODE}/")]
    assert any(path.startswith(f"{contract.TRAINER_NODE}/model/") for path in trainer)
    root = output_dir / contract.PIPELINE_ROOT_DIR
    assert [path for path in trainer if (root / path).exists()] == []
    assert [p for p in _empty_folders(root) if p.startswith(f"{contract.TRAINER_NODE}/")] == []
    _assert_the_rerun_finishes(small_cifar10, output_dir, QUICK)


def _interrupt_a_beam_stage(data_dir: Path, output_dir: Path, log: Path,
                            whole_group: bool, stop: int = signal.SIGINT) -> None:
    """Starts a run, sends SIGINT while the DirectRunner's two worker processes run ExampleGen,
    and checks the stop: within seconds (the stage did not run on to its end), the one line, no
    traceback (the workers leave Ctrl-C to the run), no worker left, no empty output folder.
    The workers are interrupted as soon as both run, while they still import Beam."""
    stage = contract.EXAMPLE_GEN_NODE
    run = _start(data_dir, output_dir, log, MULTI_PROCESSING)
    workers: list[psutil.Process] = []
    with _killed_if_left(run):
        _wait_for(lambda: f"Component {stage} is running" in log.read_text(), run, log,
                  f"{stage}'s start")

        def working() -> bool:
            workers[:] = _beam_workers(run.pid)
            return len(workers) == 2 and all(map(_ignores_ctrl_c, workers))

        _wait_for(working, run, log, f"{stage}'s two Beam workers at work", limit_s=300)
        sent = time.monotonic()
        (os.killpg if whole_group else os.kill)(run.pid, stop)
        run.communicate(timeout=300)
        elapsed = time.monotonic() - sent
    stderr = _assert_one_line(run, log, output_dir, stop)
    assert f"Component {stage} is finished" not in stderr  # stopped, not run to its end
    assert elapsed < 60, f"{elapsed:.0f} s from SIGINT to exit"
    assert [worker.pid for worker in workers if not _gone(worker)] == []
    root = output_dir / contract.PIPELINE_ROOT_DIR
    assert [p for p in _empty_folders(root) if p.startswith(f"{stage}/")] == []


def test_ctrl_c_during_a_multi_processing_beam_stage_stops_it(small_cifar10, tmp_path):
    """Ctrl-C in a terminal: every worker got SIGINT too and printed its traceback, and the
    stage took its time to stop. Then the next run resumes and finishes."""
    output_dir = tmp_path / "out"
    _interrupt_a_beam_stage(small_cifar10, output_dir, tmp_path / "stderr.txt", whole_group=True)
    _assert_the_rerun_finishes(small_cifar10, output_dir, MULTI_PROCESSING)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_to_the_run_alone_during_a_beam_stage_does_not_hang(small_cifar10,
                                                                          tmp_path, stop):
    """`kill -INT <run>` (no signal for the workers): the run printed its line, then waited
    forever for its workers, which waited for work. SIGTERM (`timeout`, `docker stop`, systemd)
    ended the run at once with no word, its workers left running and its executions RUNNING."""
    _interrupt_a_beam_stage(small_cifar10, tmp_path / "out", tmp_path / "stderr.txt",
                            whole_group=False, stop=stop)
