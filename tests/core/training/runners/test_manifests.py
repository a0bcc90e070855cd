"""The kubernetes runner's manifests: the Job and Service for 1x1 CPU, 1x4 GPU and 2x8 GPU pass
`kubernetes-validate --strict` and run the right torchrun command with the right env, volumes and security context;
the RBAC component renders and validates and grants what the runner calls."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_manifests import DEPLOY, Manifests, _tool, _validate
from tuneserve.core.training.runners.base import WORKER_MODULE
from tuneserve.core.training.runners.manifests import (
    INDEX_ANNOTATION,
    JobShape,
    job_manifest,
    job_name,
    service_manifest,
    torchrun_command,
)
from tuneserve.settings import KubernetesSettings, Settings

DATA_DIR = Path("/data")
SPEC = DATA_DIR / "jobs" / "job-0123456789abcdef" / "spec.json"
SHAPES = {"1x1-cpu": JobShape(1, 1, False), "1x4-gpu": JobShape(1, 4, True), "2x8-gpu": JobShape(2, 8, True)}
SETTINGS = KubernetesSettings(image="registry.example/tuneserve:0.1.0-gpu", node_selector={"pool": "gpu"})


def _documents(shape: JobShape) -> list[dict[str, Any]]:
    docs = [job_manifest(SPEC, shape, SETTINGS, job_id="job-0123456789abcdef", data_dir=DATA_DIR)]
    if shape.nodes > 1:
        docs.append(service_manifest(SPEC, SETTINGS, job_id="job-0123456789abcdef"))
    return docs


def _assert_strictly_valid(docs: list[dict[str, Any]], path: Path) -> None:
    path.write_text(yaml.safe_dump_all(docs))
    run = _validate(path)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert not [line for line in lines if line.startswith(("WARN", "ERROR", "FATAL"))], run.stdout
    assert len([line for line in lines if " passed for resource " in line]) >= len(docs), run.stdout


@pytest.mark.parametrize("shape_name", SHAPES)
def test_manifests_pass_kubernetes_validate_strict(shape_name: str, tmp_path: Path) -> None:
    _assert_strictly_valid(_documents(SHAPES[shape_name]), tmp_path / f"{shape_name}.yaml")


def test_strict_validation_rejects_a_misspelt_job_field(tmp_path: Path) -> None:
    """The control for the test above: the same check fails on a field a Job does not have."""
    job = _documents(SHAPES["1x1-cpu"])[0]
    job["spec"]["backofLimit"] = job["spec"].pop("backoffLimit")
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(job))
    run = _validate(path)
    assert run.returncode != 0 and "backofLimit" in run.stdout, run.stdout


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]


def test_single_node_job_runs_standalone_torchrun_of_the_worker() -> None:
    job = _documents(SHAPES["1x1-cpu"])[0]
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 1, 1)
    assert spec["backoffLimit"] == 0
    assert spec["ttlSecondsAfterFinished"] == SETTINGS.ttl_seconds_after_finished
    assert spec["activeDeadlineSeconds"] == SETTINGS.active_deadline_seconds
    (container,) = _pod(job)["containers"]
    assert container["command"] == [
        "torchrun", "--standalone", "--nnodes=1", "--nproc_per_node=1", "-m", WORKER_MODULE, str(SPEC),
    ]
    assert container["image"] == SETTINGS.image
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert container["resources"]["requests"] == container["resources"]["limits"]  # Guaranteed QoS
    assert "subdomain" not in _pod(job) and "tolerations" not in _pod(job)


def test_multi_node_job_rendezvouses_at_the_rank_zero_pod_through_the_headless_service() -> None:
    job, service = _documents(SHAPES["2x8-gpu"])
    name = job["metadata"]["name"]
    spec, pod = job["spec"], _pod(job)
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    (container,) = pod["containers"]
    command = container["command"]
    assert command[0] == "torchrun" and command[-3:] == ["-m", WORKER_MODULE, str(SPEC)]
    flags = dict(arg.split("=", 1) for arg in command[1:-3])
    assert flags["--nnodes"] == "2" and flags["--nproc_per_node"] == "8"
    # Kubernetes expands $(NODE_RANK) from the container's env: the pod's completion index.
    assert flags["--node_rank"] == "$(NODE_RANK)"
    env = {item["name"]: item for item in container["env"]}
    assert env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == f"metadata.annotations['{INDEX_ANNOTATION}']"
    # The rank-0 pod's DNS name: hostname <job>-0 (Indexed Job) under the subdomain = the headless Service's name.
    host, subdomain = flags["--master_addr"].split(".")
    assert host == f"{name}-0" and subdomain == pod["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    labels = spec["template"]["metadata"]["labels"]
    assert all(labels.get(key) == value for key, value in service["spec"]["selector"].items())
    assert [p["port"] for p in service["spec"]["ports"]] == [int(flags["--master_port"])]
    assert [p["containerPort"] for p in container["ports"]] == [int(flags["--master_port"])]
    # One GPU per process, on GPU nodes.
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"pool": "gpu"}


@pytest.mark.parametrize("shape_name", SHAPES)
def test_pods_mount_the_servers_volume_at_its_path_and_run_locked_down(shape_name: str) -> None:
    job = _documents(SHAPES[shape_name])[0]
    pod = _pod(job)
    (container,) = pod["containers"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    data = volumes[mounts[str(DATA_DIR)]]
    assert data["persistentVolumeClaim"]["claimName"] == SETTINGS.data_claim_name
    assert SPEC.is_relative_to(DATA_DIR)  # the spec the command names is on that volume
    assert "emptyDir" in volumes[mounts["/tmp"]] and volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    # The same security context as the server's Deployment (rendered from deploy/overlays/cpu).
    server = Manifests(_render_cpu_overlay())
    assert pod["securityContext"] == server.pod["spec"]["securityContext"]
    assert container["securityContext"] == server.container["securityContext"]
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert pod["restartPolicy"] == "Never"
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "tuneserve" and labels["tuneserve.io/job-id"] == "job-0123456789abcdef"


def test_job_names_are_dns_labels_and_baselines_get_their_own() -> None:
    names = {job_name(SPEC), job_name(SPEC.with_name("spec.frozen.json")), job_name(SPEC.with_name("spec-scratch.json"))}
    assert len(names) == 3
    for name in names:
        assert len(name) <= 52 and name == name.lower() and name.replace("-", "").isalnum(), name
    assert job_name(SPEC) == "tuneserve-job-0123456789abcdef"


def test_torchrun_command_for_one_node_needs_no_service() -> None:
    assert "--standalone" in torchrun_command(SPEC, JobShape(1, 4, True), name="x", port=29500)
    assert "--standalone" not in torchrun_command(SPEC, JobShape(2, 1, False), name="x", port=29500)


# --- the RBAC component --------------------------------------------------------------------------------------------


def _render(directory: Path) -> str:
    import subprocess

    run = subprocess.run([_tool("kubectl"), "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


def _render_cpu_overlay() -> str:
    return _render(DEPLOY / "overlays" / "cpu")


@pytest.fixture(scope="module")
def with_runner(tmp_path_factory: pytest.TempPathFactory) -> str:
    """deploy/overlays/cpu plus the kubernetes-runner component, as an operator's overlay would combine them."""
    root = tmp_path_factory.mktemp("overlay")
    deploy = os.path.relpath(DEPLOY, root)  # kustomize refuses absolute paths
    (root / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [f"{deploy}/overlays/cpu"], "components": [f"{deploy}/components/kubernetes-runner"],
    }))
    return _render(root)


def test_runner_component_renders_and_validates(with_runner: str, tmp_path: Path) -> None:
    docs = [doc for doc in Manifests(with_runner).docs if doc["kind"] != "ServiceMonitor"]  # a CRD: no schema
    _assert_strictly_valid(docs, tmp_path / "with-runner.yaml")


# (API group, resource, verb) of every call KubernetesJobRunner makes.
RUNNER_CALLS = {
    ("batch", "jobs", "create"), ("batch", "jobs", "get"), ("batch", "jobs", "delete"),
    ("", "pods", "list"), ("", "pods", "get"), ("", "pods/log", "get"), ("", "services", "create"),
}


def test_runner_component_grants_the_runners_calls_to_the_servers_account(with_runner: str) -> None:
    manifests = Manifests(with_runner)
    role, binding = manifests.one("Role"), manifests.one("RoleBinding")
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    assert granted >= RUNNER_CALLS, RUNNER_CALLS - granted
    assert not [rule for rule in role["rules"] if "*" in rule["verbs"] or "*" in rule["resources"]]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    account = manifests.one("ServiceAccount")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    assert manifests.pod["spec"]["serviceAccountName"] == account
    assert manifests.pod["spec"]["automountServiceAccountToken"] is True  # in-cluster config reads the token
    assert manifests.one("PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_runner_component_settings_build_jobs_on_the_deployed_volume(
    with_runner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = Manifests(with_runner)
    for key in [key for key in os.environ if key.startswith("TUNESERVE_")]:
        monkeypatch.delenv(key)
    for key, value in manifests.config.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.training.runner == "kubernetes" and settings.kubernetes.image
    job = job_manifest(SPEC, JobShape(settings.training.nodes_per_job, settings.training.processes_per_job),
                       settings.kubernetes, job_id="job-0123456789abcdef", data_dir=settings.storage.data_dir)
    pod = _pod(job)
    claim = next(v for v in pod["volumes"] if v["name"] == "data")["persistentVolumeClaim"]["claimName"]
    assert claim == manifests.one("PersistentVolumeClaim")["metadata"]["name"]
    server_mounts = {m["name"]: m["mountPath"] for m in manifests.container["volumeMounts"]}
    job_mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert job_mounts["data"] == server_mounts["data"] == str(settings.storage.data_dir)


# --- failure reasons ----------------------------------------------------------------------------------------------
