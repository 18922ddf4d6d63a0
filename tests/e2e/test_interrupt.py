"""Issue #16, case 13: Ctrl-C during a run is one line and exit code 130, leaves no empty output
folder behind, and the same command run again finishes (resuming from ML Metadata)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from modules import contract
from tests.support.pipeline_runs import PROJECT_DIR

QUICK = ("--epochs", "2", "--batch-size", "64", "--beam-workers", "1", "--no-tflite",
         "--accuracy-threshold", "0")


def _start(data_dir: Path, output_dir: Path, log: Path) -> subprocess.Popen:
    """local_runner.py in its own process group, as a terminal runs a foreground job."""
    with open(log, "w") as stderr:
        return subprocess.Popen(
            [sys.executable, str(PROJECT_DIR / "local_runner.py"), "--data-dir", str(data_dir),
             "--output-dir", str(output_dir), *QUICK],
            cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=stderr, text=True,
            start_new_session=True)


def _empty_folders(root: Path) -> list[str]:
    """Empty execution output folders, <node>/<output key>/<execution id> (an artifact's own
    empty subfolders, such as a SavedModel's assets/, are not debris)."""
    return sorted(str(p.relative_to(root)) for p in root.glob("*/*/*")
                  if p.is_dir() and not any(p.iterdir()) and ".system" not in p.parts)


def test_ctrl_c_during_training_is_one_line_and_the_run_resumes(small_cifar10, tmp_path):
    output_dir, log = tmp_path / "out", tmp_path / "stderr.txt"
    trainer_models = output_dir / contract.PIPELINE_ROOT_DIR / contract.TRAINER_NODE / "model"
    empty_before = []
    run = _start(small_cifar10, output_dir, log)
    try:
        deadline = time.monotonic() + 900
        while not trainer_models.exists():  # the Trainer has started: its output folder exists
            assert run.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, "the Trainer never started"
            time.sleep(0.5)
        empty_before = _empty_folders(output_dir / contract.PIPELINE_ROOT_DIR)
        time.sleep(5)
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground group
        stdout, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    stderr = log.read_text()
    # Progress lines carry a time stamp ("12:34:56 I ..."); the outcome is the one other line.
    own = [line for line in stderr.splitlines()
           if line.strip() and not line[:8].replace(":", "").isdigit()]
    assert run.returncode == 130, stderr[-4000:]
    assert own == [f"interrupted: nothing was pushed by this run; run the same command again to "
                   f"resume (finished components are reused from "
                   f"{output_dir / contract.METADATA_FILE})"], stderr[-4000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    # The interrupted Trainer's output folders (empty when it started) are gone; finished
    # components keep theirs (an unused Transform analyzer cache is legitimately empty).
    trainer = [path for path in empty_before if path.startswith(f"{contract.TRAINER_NODE}/")]
    assert any(path.startswith(f"{contract.TRAINER_NODE}/model/") for path in trainer)
    root = output_dir / contract.PIPELINE_ROOT_DIR
    assert [path for path in trainer if (root / path).exists()] == []
    assert [p for p in _empty_folders(root) if p.startswith(f"{contract.TRAINER_NODE}/")] == []

    again = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "local_runner.py"), "--data-dir", str(small_cifar10),
         "--output-dir", str(output_dir), *QUICK],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=1500)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "Test accuracy:" in again.stdout and "Blessed and pushed version" in again.stdout
