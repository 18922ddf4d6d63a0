"""The folders are layers: imports only run downward, so each concern can be read on its own.

    modules  <-  serving, dataset, reports  <-  components  <-  pipeline  <-  cli  <-  runners

Checked on the source text (every `import` and `from ... import`, at any depth, lazy ones too), so
an upward import fails here even if no test happens to execute it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
RUNNERS = {"local_runner", "kubeflow_runner"}
TFX_ORCHESTRATION = {"tfx", "ml_metadata", "kfp", "components", "pipeline", "cli"}

# package -> the project packages (and outside packages) it must never import. Nothing the
# project ships or measures with imports the tests.
FORBIDDEN = {package: names | {"tests"} for package, names in {
    "modules": {"components", "pipeline", "cli", "reports", "dataset", "serving", "benchmarks"}
    | RUNNERS,
    "dataset": {"components", "pipeline", "cli", "reports", "serving", "benchmarks"} | RUNNERS,
    "serving": {"reports", "dataset", "benchmarks"} | TFX_ORCHESTRATION | RUNNERS,
    "reports": {"components", "pipeline", "cli", "benchmarks"} | RUNNERS,
    "components": {"pipeline", "cli", "benchmarks"} | RUNNERS,
    "pipeline": {"cli", "benchmarks"} | RUNNERS,
    "cli": RUNNERS | {"benchmarks"},
    "benchmarks": set(),
}.items()}


def imported_top_level_names(path: Path) -> set[str]:
    """Top-level package names a file imports, wherever the import statement stands."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _sources(package: str) -> list[Path]:
    return sorted((PROJECT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_only_run_downward(package):
    assert _sources(package), f"{package}/ has no Python files"
    upward = {}
    for path in _sources(package):
        bad = imported_top_level_names(path) & FORBIDDEN[package]
        if bad:
            upward[str(path.relative_to(PROJECT))] = sorted(bad)
    assert not upward, f"imports that run upward out of {package}/: {upward}"


def test_the_runners_are_thin_entry_points():
    for runner in sorted(RUNNERS):
        lines = [line for line in (PROJECT / f"{runner}.py").read_text().splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
        assert len(lines) <= 40, f"{runner}.py has {len(lines)} lines: its logic belongs in cli/"
