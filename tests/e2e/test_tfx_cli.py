"""TFX's own `tfx` CLI drives local_runner.py, as TFX users know it from the templates.

`tfx pipeline create|update` executes local_runner.py in its own process only to read the DAG, so
nothing may be downloaded or read from ML Metadata then; `tfx run create` starts a bare
`python local_runner.py`, whose settings come from CIFAR10_<FLAG> environment variables.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modules import contract
from tests.support.pipeline_runs import PROJECT_DIR

pytestmark = pytest.mark.e2e

TFX = str(Path(sys.executable).with_name("tfx"))


def _tfx(env: dict, *args: str, cwd: Path = PROJECT_DIR) -> subprocess.CompletedProcess:
    return subprocess.run([TFX, *args, "--engine", "local"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1200)


def test_tfx_cli_creates_updates_and_runs_the_pipeline(small_cifar10, tmp_path):
    output_dir, download_dir = tmp_path / "out", tmp_path / "download"
    env = {**os.environ, "LOCAL_HOME": str(tmp_path / "tfx_home"),
           "CIFAR10_DOWNLOAD_DIR": str(download_dir), "CIFAR10_OUTPUT_DIR": str(output_dir),
           "CIFAR10_EPOCHS": "1", "CIFAR10_BATCH_SIZE": "64", "CIFAR10_BEAM_WORKERS": "1",
           "CIFAR10_ACCURACY_THRESHOLD": "0", "CIFAR10_TFLITE_MAX_ACCURACY_DROP": "1",
           "CIFAR10_TFLITE_CALIBRATION_SAMPLES": "50", "CIFAR10_TUNER_TRIALS": "1",
           "CIFAR10_TUNER_EPOCHS": "1"}

    # No data dir: creating the pipeline must not start the download nor read a metadata store.
    # As the README: the absolute path, which `tfx run create` runs again from any folder.
    created = _tfx(env, "pipeline", "create", "--pipeline_path",
                   str(PROJECT_DIR / "local_runner.py"))
    assert created.returncode == 0, created.stdout + created.stderr
    assert f'Pipeline "{contract.PIPELINE_NAME}" created successfully.' in created.stdout
    assert not download_dir.exists() or not any(download_dir.iterdir())
    assert not (output_dir / contract.METADATA_FILE).exists()

    env["CIFAR10_DATA_DIR"] = str(small_cifar10)
    updated = _tfx(env, "pipeline", "update", "--pipeline_path",
                   str(PROJECT_DIR / "local_runner.py"))
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert "updated successfully" in updated.stdout

    run = _tfx(env, "run", "create", "--pipeline_name", contract.PIPELINE_NAME, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    versions = [p.name for p in (output_dir / contract.SERVING_BASE_DIR).iterdir()
                if p.name.isdigit()]
    assert len(versions) == 1
    assert (output_dir / contract.SERVING_BASE_DIR / versions[0] /
            contract.SAVED_MODEL_FILE).is_file()
    assert (output_dir / contract.TFLITE_BASE_DIR / versions[0] / contract.TFLITE_FILE).is_file()
