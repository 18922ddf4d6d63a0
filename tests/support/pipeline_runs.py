"""Small CIFAR-10 fixtures built from ../shared/datasets/cifar10, and pipeline runs on them."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT_DIR = Path(__file__).resolve().parents[2]
SHARED_CIFAR10 = Path(os.environ.get("CIFAR10_SHARED_DIR",
                                     PROJECT_DIR.parent / "shared" / "datasets" / "cifar10"))
BUILDER = SHARED_CIFAR10 / "build_cifar10.py"


def build_fixture(out_dir: Path, limit: int) -> Path:
    """Runs the offline copy's builder: OUT/cifar-10-batches-bin/ with `limit` records per file."""
    if not BUILDER.exists():
        pytest.skip(f"The offline CIFAR-10 copy is not at {SHARED_CIFAR10} "
                    "(set CIFAR10_SHARED_DIR); tests that need real images are skipped.")
    subprocess.run([sys.executable, str(BUILDER), "--out", str(out_dir), "--limit", str(limit)],
                   check=True, capture_output=True)
    return out_dir


def copy_fixture(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination


def run_local_runner(*args: str) -> subprocess.CompletedProcess:
    """Runs local_runner.py the way a user does, in a child process."""
    return subprocess.run([sys.executable, str(PROJECT_DIR / "local_runner.py"), *args],
                          cwd=PROJECT_DIR, capture_output=True, text=True, timeout=1500)


class PipelineRun:
    """One local_runner.py run and where it put things."""

    def __init__(self, output_dir: Path, process: subprocess.CompletedProcess):
        self.output_dir = output_dir
        self.process = process
        self.serving_dir = output_dir / "serving_model"
        self.tflite_dir = output_dir / "tflite_model"
        self.metadata_path = output_dir / "metadata.sqlite"

    def versions(self, base: Path) -> list[str]:
        return sorted(p.name for p in base.iterdir() if p.name.isdigit()) if base.exists() else []

    def explain(self) -> str:
        return f"exit {self.process.returncode}\nSTDOUT:\n{self.process.stdout[-4000:]}\n" \
               f"STDERR:\n{self.process.stderr[-6000:]}"


# Small but real: enough epochs that the model learns something, a CI-sized budget; the Tuner runs
# as it does by default, on a tiny search. The TFLite limit is loose because a model this briefly
# trained has many near-ties that quantization may flip.
E2E_TUNER_ARGS = ("--tuner-trials", "2", "--tuner-epochs", "1")
E2E_ARGS = ("--epochs", "4", "--batch-size", "64", "--beam-workers", "1",
            "--accuracy-threshold", "0.15", "--tflite-max-accuracy-drop", "0.10",
            "--tflite-calibration-samples", "200", *E2E_TUNER_ARGS)


def run_pipeline(data_dir: Path, output_dir: Path, *extra: str) -> PipelineRun:
    process = run_local_runner("--data-dir", str(data_dir), "--output-dir", str(output_dir),
                               *E2E_ARGS, *extra)
    return PipelineRun(output_dir, process)
