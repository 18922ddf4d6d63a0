"""Security rules that hold for the whole code base, checked on the source itself."""
from __future__ import annotations

import ast
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    p for folder in ("pipeline", "components", "modules", "serving", "benchmarks")
    for p in (PROJECT / folder).rglob("*.py")) + [PROJECT / "local_runner.py",
                                                   PROJECT / "kubeflow_runner.py"]
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "joblib", "shelve", "marshal"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_that_deserializes_code():
    """The python CIFAR-10 batches are pickles; nothing here may load one (or any pickle)."""
    offenders = {str(p.relative_to(PROJECT)): sorted(_imports(p) & UNSAFE_MODULES)
                 for p in SOURCES if _imports(p) & UNSAFE_MODULES}
    assert not offenders


def test_no_allow_pickle_and_every_extraction_checks_its_members():
    for path in SOURCES:
        assert "allow_pickle=True" not in path.read_text(), path
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "extractall"):
                keywords = {k.arg for k in node.keywords}
                assert "members" in keywords, f"{path}:{node.lineno}: extractall without a " \
                                              f"checked member list"


def test_no_credentials_in_source():
    """Cloud credentials come from the environment (ADC, AWS_*), never from files in the repo."""
    for path in SOURCES:
        text = path.read_text()
        for marker in ("AKIA", "-----BEGIN PRIVATE KEY", "\"private_key\":"):
            assert marker not in text, f"{path} holds what looks like a credential"


def test_pipeline_image_runs_as_non_root():
    lines = [l.split() for l in (PROJECT / "Dockerfile").read_text().splitlines()
             if l.strip().upper().startswith("USER ")]
    assert lines and lines[-1][1] not in ("root", "0", "0:0")
