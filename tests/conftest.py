"""Session fixtures: a small real CIFAR-10 fixture, and the pipeline trained on it once.

`make test` runs pytest on two xdist workers (`-n 2 --dist loadgroup`): most of an e2e test is
single-threaded Python (Beam's DirectRunner, TFMA, process start-up), so two at a time keep both
cores busy. Each test file runs whole on one worker (its module fixtures are built once), and every
test of the shared pipeline run (`trained_pipeline`) on the same worker (it is trained once).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from xdist.scheduler import LoadGroupScheduling

from tests.support.pipeline_runs import PipelineRun, build_fixture, run_pipeline

SHARED_RUN_GROUP = "shared_pipeline_run"
# The longest work units first (CI's --durations), so no long one starts last and runs alone;
# the rest follow, e2e files before unit files.
LONGEST_FIRST = (
    SHARED_RUN_GROUP,
    "tests/e2e/test_kfp_launcher.py",
    "tests/e2e/test_interrupt.py",
    "tests/e2e/test_benchmark_scale_out.py",
    "tests/e2e/test_beam_portable.py",
    "tests/e2e/test_tfx_cli.py",
    "tests/e2e/test_reliability.py",
)


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


def work_unit(item: pytest.Item) -> str:
    """The xdist group of a test: the shared run's, or its file's."""
    if "trained_pipeline" in getattr(item, "fixturenames", ()):
        return SHARED_RUN_GROUP
    return item.nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks into the node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.xdist_group(work_unit(item)))


def _rank(unit: str) -> tuple[int, int]:
    if unit in LONGEST_FIRST:
        return 0, LONGEST_FIRST.index(unit)
    return (1 if unit.startswith("tests/e2e/") else 2), 0


class LongestFirstScheduling(LoadGroupScheduling):
    """loadgroup, handing out the longest remaining work unit first instead of the largest
    count of tests (a one-test e2e file can outlast a hundred unit tests)."""

    def _assign_work_unit(self, node) -> None:
        longest = min(self.workqueue, key=_rank)  # ties keep xdist's order
        self.workqueue.move_to_end(longest, last=False)
        super()._assign_work_unit(node)


class LongestFirstPlugin:
    @staticmethod
    def pytest_xdist_make_scheduler(config: pytest.Config, log):
        if config.getvalue("dist") == "loadgroup":
            return LongestFirstScheduling(config, log)
        return None


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist"):  # its hooks exist only then (-p no:xdist)
        config.pluginmanager.register(LongestFirstPlugin(), "longest_first_scheduling")
