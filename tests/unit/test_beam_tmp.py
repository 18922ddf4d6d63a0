"""Issue #20, case 10: a local DirectRunner run leaves no 52 MB `tfx_ephemeral` sdist in /tmp.

TFX builds that package (a copy of the whole tfx install, then `setup.py sdist`) in $TMPDIR for
every Beam executor it starts with Beam arguments, and never deletes it; the project's default
arguments name the workers' dependencies so TFX skips it (contract.DIRECT_RUNNER_DEPENDENCIES_ARG).
Measured here: about 6 s per Beam stage on two busy cores, 52 MB each.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modules import contract
from pipeline import configs

PROJECT_DIR = Path(__file__).resolve().parents[2]
STAGE = """
import sys
import apache_beam as beam
from tfx.dsl.components.base import base_beam_executor
from components.cifar10_example_gen import executor
from pipeline import configs

args = configs.PipelineConfig(beam_workers=int(sys.argv[1])).default_beam_args()
stage = executor.Executor(base_beam_executor.BaseBeamExecutor.Context(
    beam_pipeline_args=args, tmp_dir=sys.argv[2], unique_id="stage"))
with stage._make_beam_pipeline() as pipeline:
    _ = pipeline | beam.Create(range(10)) | beam.combiners.Count.Globally()
print("stage ran with", stage._beam_pipeline_args)
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_default_beam_args_already_name_the_dependencies(workers):
    """TFX's own test for 'build the sdist?' returns our arguments unchanged (nothing built)."""
    from tfx.utils import dependency_utils

    args = configs.PipelineConfig(beam_workers=workers).default_beam_args()
    assert contract.DIRECT_RUNNER_DEPENDENCIES_ARG in args
    assert dependency_utils.make_beam_dependency_flags(list(args)) == args


def test_a_beam_stage_leaves_nothing_in_tmpdir(tmp_path):
    tmpdir, work = tmp_path / "tmp", tmp_path / "work"
    tmpdir.mkdir()
    work.mkdir()
    proc = subprocess.run([sys.executable, "-c", STAGE, "1", str(work)], cwd=PROJECT_DIR,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                               "TMPDIR": str(tmpdir)}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stage ran with" in proc.stdout
    left = [str(p.relative_to(tmpdir)) for p in tmpdir.rglob("*")
            if contract.TFX_EPHEMERAL_PACKAGE in p.name or p.name in ("setup.py", "tfx")]
    assert not left, left
    assert "--extra_package" not in proc.stdout

