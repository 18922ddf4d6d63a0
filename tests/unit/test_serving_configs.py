"""The TF Serving configs in serving/ parse as the server parses them and fit the Pusher's layout.

Each config is parsed with TF Serving's own messages (tests.support.tf_serving_protos), and every
path and version it names is checked against a real push: a real SavedModel published into a
model base path by serving.model_base (what the Pusher uses), mounted where docker-compose.yml
and the Kubernetes overlays mount it.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format

from modules import contract
from serving.client import ServingClient
from tests.support import tf_serving_protos as protos

REPO = Path(__file__).resolve().parents[2]
SERVING_DIR = REPO / "serving"
GCS_OVERLAY = REPO / "deploy" / "k8s" / "overlays" / "gcs"
LOCAL_OVERLAY = REPO / "deploy" / "k8s" / "overlays" / "local"
MOUNTED_BASE_PATH = contract.SERVING_MOUNT_PATH  # where compose and k8s mount the base path
SHIPPED_CONFIGS = sorted(SERVING_DIR.glob("*.config")) + [GCS_OVERLAY / "models.config"]


def _parse(path: Path, name: str):
    return protos.parse_file(path, name)


def _model(path: Path):
    (model,) = _parse(path, "ModelServerConfig").model_config_list.config
    return model


def _compose() -> dict:
    return yaml.safe_load((SERVING_DIR / "docker-compose.yml").read_text())


# --------------------------------------------------------------------------------------------
# Each config parses
# --------------------------------------------------------------------------------------------
def test_every_shipped_config_has_a_known_message():
    for path in SERVING_DIR.glob("*.config"):
        assert path.name in protos.CONFIG_MESSAGES, f"{path.name}: which message is it?"
        _parse(path, protos.CONFIG_MESSAGES[path.name])


def test_models_config_serves_the_newest_push_as_shipped():
    model = _model(SERVING_DIR / "models.config")
    assert model.name == contract.MODEL_NAME == "cifar10"
    assert model.base_path == MOUNTED_BASE_PATH == "/models/cifar10"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions == 1
    assert not model.version_labels  # labels are the A/B example's business


def test_ab_config_parses():
    model = _model(SERVING_DIR / "models.ab.config")
    assert model.name == "cifar10"
    assert model.base_path == "/models/cifar10"
    assert model.model_platform == "tensorflow"
    versions = list(model.model_version_policy.specific.versions)
    assert len(versions) == 2
    labels = dict(model.version_labels)
    assert set(labels) == {"stable", "canary"}
    assert set(labels.values()) == set(versions)
    text = (SERVING_DIR / "models.ab.config").read_text()
    assert "FILL IN REAL VERSION NUMBERS" in text
    assert "--allow_version_labels_for_unavailable_models" in text

    # The commented-out `latest` policy is valid too, once uncommented.
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "# model_version_policy {")
    block, depth = [], 0
    for line in lines[start:]:
        stripped = line.strip()[1:].strip()
        block.append(stripped)
        depth += stripped.count("{") - stripped.count("}")
        if depth == 0:
            break
    alt = protos.parse_text("\n".join(block), "ModelConfig")
    assert alt.model_version_policy.latest.num_versions == 1


def test_batching_config_parses():
    params = _parse(SERVING_DIR / "batching.config", "BatchingParameters")
    assert params.max_batch_size.value >= ServingClient(rest_url="http://x").batch_size
    assert 0 < params.batch_timeout_micros.value <= 100_000
    assert params.num_batch_threads.value >= 1
    assert params.max_enqueued_batches.value >= 1


def test_monitoring_config_parses():
    config = _parse(SERVING_DIR / "monitoring.config", "MonitoringConfig")
    assert config.prometheus_config.enable is True
    assert config.prometheus_config.path == "/monitoring/prometheus/metrics"
    assert config.prometheus_config.path == contract.PROMETHEUS_METRICS_PATH


def test_config_parsing_rejects_typos():
    with pytest.raises(text_format.ParseError):
        protos.parse_text("max_batch_sise { value: 1 }", "BatchingParameters")
    with pytest.raises(text_format.ParseError):
        protos.parse_text("prometheus_config { enable: 3 }", "MonitoringConfig")
    with pytest.raises(text_format.ParseError):
        protos.parse_text("model_config_list { config { nmae: 'x' } }", "ModelServerConfig")


# --------------------------------------------------------------------------------------------
# docker-compose.yml
# --------------------------------------------------------------------------------------------
def test_docker_compose():
    compose = _compose()
    # `docker compose up` (no profile) starts TF Serving alone.
    (service,) = [s for s in compose["services"].values() if not s.get("profiles")]
    assert service is compose["services"]["tfserving"]
    assert service["image"] == contract.TF_SERVING_IMAGE == "tensorflow/serving:2.16.1"
    assert {"8500:8500", "8501:8501"} <= set(service["ports"])
    volumes = service["volumes"]
    assert any(v.endswith(f":{MOUNTED_BASE_PATH}:ro") for v in volumes)
    (config_mount,) = [v for v in volumes if ":/config" in v]
    host_dir = SERVING_DIR / config_mount.split(":")[0]
    for models_config in (None, "models.ab.config"):  # CIFAR10_MODELS_CONFIG unset, or the A/B
        env = {"CIFAR10_MODELS_CONFIG": models_config} if models_config else {}
        command = [_interpolate(arg, env) for arg in service["command"]]
        for flag in (f"--model_config_file=/config/{models_config or 'models.config'}",
                     "--model_config_file_poll_wait_seconds=60", "--enable_batching",
                     "--batching_parameters_file=/config/batching.config",
                     "--monitoring_config_file=/config/monitoring.config",
                     "--allow_version_labels_for_unavailable_models"):
            assert flag in command
        for arg in command:  # every /config/... file the server reads is in the mounted folder
            if "=/config/" in arg:
                assert (host_dir / arg.split("=/config/")[1]).is_file(), arg


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `${NAME:-default}` as `docker compose` fills it in from the environment."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m[1]) or m[2], text)


def test_docker_compose_monitoring_profile():
    services = _compose()["services"]
    monitoring = {name for name, s in services.items() if "monitoring" in s.get("profiles", [])}
    assert monitoring == {"prometheus", "grafana"}
    for name in monitoring:
        image = services[name]["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"
        for volume in services[name]["volumes"]:  # every host file or folder they mount exists
            host = volume.split(":")[0]
            assert (SERVING_DIR / host).exists(), f"{name}: {host}"
    prometheus = yaml.safe_load((REPO / "deploy/monitoring/prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    metrics_path = _parse(SERVING_DIR / "monitoring.config", "MonitoringConfig")
    assert job["metrics_path"] == metrics_path.prometheus_config.path
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in services and f"{port}:{port}" in services[host]["ports"]  # the REST port


def test_docker_compose_config_cli():
    """`docker compose config` (no engine needed) where the compose plugin is installed."""
    docker = shutil.which("docker")
    if not docker:
        pytest.skip("no docker client here; the YAML is checked by test_docker_compose")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the docker client has no compose plugin here: "
                    f"{probe.stderr.strip().splitlines()[0]}")
    env = {**os.environ, "CIFAR10_SERVING_DIR": "/tmp/serving_model"}
    proc = subprocess.run([docker, "compose", "-f", str(SERVING_DIR / "docker-compose.yml"),
                           "--profile", "monitoring", "config", "--quiet"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------------------------
# Against a real push
# --------------------------------------------------------------------------------------------
def _tf_serving_versions(base: Path) -> list[int]:
    """The versions TF Serving's file-system source sees: integer-named children, sorted."""
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def _pick(policy, available: list[int]) -> list[int]:
    """The versions a ModelVersionPolicy loads out of `available`, as TF Serving chooses them."""
    kind = policy.WhichOneof("policy_choice") or "latest"
    if kind == "latest":
        return available[-(policy.latest.num_versions or 1):]
    if kind == "all":
        return available
    return [v for v in available if v in set(policy.specific.versions)]


@pytest.fixture(scope="module")
def pushed(tmp_path_factory) -> tuple[Path, list[int]]:
    """An output dir whose serving base path holds two real SavedModel versions and a staging
    folder, published the way the Pusher publishes."""
    import tensorflow as tf

    from serving import model_base

    tmp = tmp_path_factory.mktemp("push")

    class Tiny(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, x):
            return {"y": x * 2.0}

    module = Tiny()
    source = tmp / "export"
    tf.saved_model.save(module, str(source),
                        signatures={contract.SERVING_SIGNATURE: module.__call__})
    output_dir = tmp / "outputs"
    base = output_dir / contract.SERVING_BASE_DIR  # the Pusher's default --serving-dir
    versions = [1800000000, 1800000600]  # not the placeholders of models.ab.config
    for version in versions:
        model_base.publish_version(str(source), str(base), version, last=contract.SAVED_MODEL_FILE)
    (base / f"{contract.STAGING_PREFIX}1800001200-abcd").mkdir()  # a push in progress
    return output_dir, versions


def _host_base_for_compose(mounted: str, serving_dir: Path) -> Path:
    """Maps a container path onto the host through the tfserving service's volumes, with
    CIFAR10_SERVING_DIR set to the Pusher's base path."""
    service = _compose()["services"]["tfserving"]
    for volume in service["volumes"]:
        host, container = volume.rsplit(":", 2)[:2]  # HOST:CONTAINER:MODE; HOST may hold ":"
        host = str(serving_dir) if host.startswith("${CIFAR10_SERVING_DIR") else host
        if mounted == container or mounted.startswith(container + "/"):
            return Path(host + mounted[len(container):])
    raise AssertionError(f"{mounted} is not mounted in docker-compose.yml")


def _host_base_for_local_overlay(mounted: str, claim_root: Path) -> Path:
    """Maps a container path onto the claim through overlays/local's volume mount."""
    patch = yaml.safe_load((LOCAL_OVERLAY / "models-volume.yaml").read_text())
    spec = patch["spec"]["template"]["spec"]
    (mount,) = spec["containers"][0]["volumeMounts"]
    (volume,) = spec["volumes"]
    assert volume["name"] == mount["name"] and volume["persistentVolumeClaim"]["claimName"]
    assert mount["readOnly"] is True
    container = mount["mountPath"]
    assert mounted == container or mounted.startswith(container + "/"), mounted
    return claim_root / mounted[len(container):].lstrip("/")


def test_pusher_layout(pushed):
    output_dir, versions = pushed
    base = output_dir / contract.SERVING_BASE_DIR
    assert _tf_serving_versions(base) == versions  # the staging folder is never a version
    for version in versions:
        assert (base / str(version) / contract.SAVED_MODEL_FILE).is_file()


@pytest.mark.parametrize("mapping", ["compose", "k8s-local"])
def test_models_config_maps_onto_the_push_and_picks_the_newest(pushed, mapping):
    import tensorflow as tf

    output_dir, versions = pushed
    serving_dir = output_dir / contract.SERVING_BASE_DIR
    model = _model(SERVING_DIR / "models.config")
    host = (_host_base_for_compose(model.base_path, serving_dir) if mapping == "compose"
            else _host_base_for_local_overlay(model.base_path, serving_dir))
    assert host == serving_dir
    (picked,) = _pick(model.model_version_policy, _tf_serving_versions(host))
    assert picked == max(versions)
    loaded = tf.saved_model.load(str(host / str(picked)))
    assert contract.SERVING_SIGNATURE in loaded.signatures


def test_ab_config_with_real_versions_filled_in(pushed):
    """The A/B example as its comments say to use it: real version numbers filled in."""
    output_dir, versions = pushed
    serving_dir = output_dir / contract.SERVING_BASE_DIR
    text = (SERVING_DIR / "models.ab.config").read_text()
    template = _model(SERVING_DIR / "models.ab.config")
    placeholders = list(template.model_version_policy.specific.versions)
    assert not set(placeholders) & set(_tf_serving_versions(serving_dir))  # they must be edited
    for placeholder, real in zip(placeholders, versions, strict=True):
        text = text.replace(str(placeholder), str(real))
    model = protos.parse_text(text, "ModelServerConfig").model_config_list.config[0]
    host = _host_base_for_compose(model.base_path, serving_dir)
    loaded = _pick(model.model_version_policy, _tf_serving_versions(host))
    assert sorted(loaded) == versions
    assert dict(model.version_labels) == {"stable": versions[0], "canary": versions[1]}
    for version in model.version_labels.values():  # every label names a loaded version
        assert version in loaded
        assert (host / str(version) / contract.SAVED_MODEL_FILE).is_file()


def test_gcs_overlay_config_points_at_the_pushers_default_base_path():
    model = _model(GCS_OVERLAY / "models.config")
    assert model.name == contract.MODEL_NAME
    assert model.base_path.startswith("gs://")
    # kubeflow_runner.py's default --serving-dir: <pipeline-root>/serving_model
    assert model.base_path.rsplit("/", 1)[1] == contract.SERVING_BASE_DIR
    assert model.model_version_policy.latest.num_versions == 1


def test_every_config_names_the_contract_model():
    for path in SHIPPED_CONFIGS:
        if protos.CONFIG_MESSAGES.get(path.name) == "ModelServerConfig":
            assert _model(path).name == contract.MODEL_NAME, path
