"""Session fixtures: a small real CIFAR-10 fixture, and the pipeline trained on it once."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.pipeline_runs import PipelineRun, build_fixture, run_pipeline


@pytest.fixture(scope="session")
def small_cifar10(tmp_path_factory) -> Path:
    """A real CIFAR-10 fixture: 300 records per batch file (1,350 train, 150 eval, 300 test)."""
    return build_fixture(tmp_path_factory.mktemp("cifar10-small"), limit=300)


@pytest.fixture(scope="session")
def trained_pipeline(small_cifar10, tmp_path_factory) -> PipelineRun:
    """The whole pipeline run once on the small fixture; shared by the e2e and TFLite tests."""
    run = run_pipeline(small_cifar10, tmp_path_factory.mktemp("e2e"))
    assert run.process.returncode == 0, run.explain()
    return run
