"""The kubernetes runner: the Job and Service manifests for 1x1 CPU, 1x4 GPU and 2x8 GPU pass
`kubernetes-validate --strict` and run the right torchrun command with the right env, volumes and security context;
the RBAC component renders and validates and grants what the runner calls; Job and pod statuses map to the reasons a
FAILED job reports; torchrun's failure summary names the rank that failed.

No cluster runs here. The API interaction (create the Job, follow the rank-0 pod's log, delete it on cancel, read
why it failed) runs the official `kubernetes` client against `kubernetes_api.FakeKubernetes`, real HTTP on loopback
whose pods are real processes running the Job's own torchrun command; those tests need the client (the [kubernetes]
extra, in [dev]) and skip without it. What a fake cannot show (scheduling, DNS of the headless Service, a real
multi-node rendezvous, OOMKilled and deadlines set by a real kubelet) is covered only by the manifest checks and the
status-mapping tests above it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_manifests import DEPLOY, Manifests, _tool, _validate
from tuneserve.core.training.runners.base import WORKER_MODULE, outcome_of
from tuneserve.core.training.runners.kubernetes import diagnose_job_failure
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


def _k8s_pod(index: int, **state: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": f"tuneserve-job-x-{index}-abcde", "annotations": {INDEX_ANNOTATION: str(index)}},
        "spec": {"containers": [{"name": "trainer", "resources": {"limits": {"memory": "8Gi"}}}]},
        "status": {"phase": "Failed", "containerStatuses": [{"name": "trainer", "state": state}]},
    }


FAILED = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                     "message": "Job has reached the specified backoff limit"}]}}


def test_oom_killed_pod_is_the_reason() -> None:
    pods = [_k8s_pod(0, terminated={"exitCode": 1, "reason": "Error"}),
            _k8s_pod(1, terminated={"exitCode": 137, "reason": "OOMKilled"})]
    failure = diagnose_job_failure(FAILED, pods)
    assert failure.decisive and "tuneserve-job-x-1-abcde (node 1) was OOMKilled" in failure.reason
    assert "8Gi" in failure.reason and "kubernetes.memory" in failure.reason


def test_deadline_is_the_reason() -> None:
    job = {"spec": {"activeDeadlineSeconds": 600},
           "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}}
    failure = diagnose_job_failure(job, [_k8s_pod(0, terminated={"exitCode": 143, "reason": "Error"})])
    assert failure.decisive and "activeDeadlineSeconds (600 s)" in failure.reason


def test_image_that_cannot_be_pulled_is_the_reason() -> None:
    pods = [_k8s_pod(0, waiting={"reason": "ImagePullBackOff", "message": 'Back-off pulling image "nope"'})]
    failure = diagnose_job_failure({}, pods)
    assert failure.decisive and "cannot start: ImagePullBackOff" in failure.reason


def test_a_pod_that_exited_points_at_its_log() -> None:
    pods = [_k8s_pod(1, terminated={"exitCode": 1, "reason": "Error"}), _k8s_pod(0, running={})]
    failure = diagnose_job_failure(FAILED, pods)
    assert not failure.decisive and failure.pod == "tuneserve-job-x-1-abcde"
    assert failure.reason == "pod tuneserve-job-x-1-abcde (node 1) exited with code 1"
    assert "BackoffLimitExceeded" in diagnose_job_failure(FAILED, []).reason


# torchrun's summary when rank 1 was killed (as torch 2.13 prints it) after rank 0 reported its own failure.
TORCHRUN_SUMMARY = """\
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
tuneserve.engines.training.worker FAILED
------------------------------------------------------------
Failures:
[1]:
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 17332)
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-27_22:15:09
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 17333)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 17333
============================================================""".splitlines()


def test_torchrun_root_cause_names_the_rank_that_failed_first() -> None:
    finals = [{"kind": "failed", "reason": "rank 0: DistBackendError: [gloo] Connection closed by peer"}]
    outcome = outcome_of(finals, "exited with code 1", False, TORCHRUN_SUMMARY)
    assert outcome.status == "failed"
    assert outcome.reason == "training rank 1 killed by SIGKILL (out of memory?)"


def test_the_failing_ranks_own_exception_wins() -> None:
    lines = [line.replace("-9 (pid: 17333)  (SIGKILL)", "1 (pid: 17333)") for line in TORCHRUN_SUMMARY]
    finals = [{"kind": "failed", "reason": "rank 0: DistBackendError: closed"},
              {"kind": "failed", "reason": "rank 1: ValueError: bad row"}]
    assert outcome_of(finals, "exited with code 1", False, lines).reason == "rank 1: ValueError: bad row"


def test_a_rank_that_stopped_without_a_cancel_request_is_a_failure() -> None:
    """torchrun SIGTERMs the other ranks when one dies; rank 0 then reports "cancelled", but nobody asked."""
    finals = [{"kind": "cancelled", "step": 3}]
    assert outcome_of(finals, "exited with code 1", False, TORCHRUN_SUMMARY).status == "failed"
    assert outcome_of(finals, "exited with code 1", True, TORCHRUN_SUMMARY).status == "cancelled"
    assert outcome_of(finals, "", False, []).status == "cancelled"
    preempted = [{"kind": "preempted", "step": 3, "checkpoint": "c"}]
    assert outcome_of(preempted, "exited with code 1", False, TORCHRUN_SUMMARY).reason == (
        "training rank 1 killed by SIGKILL (out of memory?)"
    )


def test_which_failures_a_restart_may_mend() -> None:
    """Killed, crashed or preempted workers restart from their checkpoint (training.max_restarts); reported errors,
    which would repeat, do not."""
    assert outcome_of([], "killed by SIGKILL (out of memory?)", False, []).retryable
    assert outcome_of([], "exited with code -11", False, []).retryable
    preempted = outcome_of([{"kind": "preempted", "step": 7, "checkpoint": "c"}], "", False, [])
    assert preempted.status == "failed" and preempted.retryable
    assert preempted.reason == "training worker preempted (SIGTERM) at step 7"
    assert outcome_of([{"kind": "preempted", "step": 7}], "", True, []).status == "cancelled"  # asked to cancel
    assert not outcome_of([{"kind": "failed", "reason": "ValueError: bad row"}], "exited with code 1", False, []).retryable
    assert outcome_of([], "exited with code 1", False, TORCHRUN_SUMMARY).retryable  # rank 1 SIGKILLed, no exception


# --- the API interaction, against a fake API server --------------------------------------------------------------

QUICK = {"max_steps": 6, "batch_size": 8, "eval_steps": 3, "max_seq_length": 16, "early_stopping_patience": 0}


@pytest.fixture
def fake_api() -> Iterator[Any]:
    pytest.importorskip("kubernetes", reason="needs the [kubernetes] extra: pip install -e '.[dev]'")
    from tests.core.training.runners.kubernetes_api import FakeKubernetes

    # NOTE: the image's PATH has torchrun; here it is beside this interpreter.
    fake = FakeKubernetes({**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("backbones") / "tiny-bert")


def _spec(data_dir: Path, backbone: Path, train_path: Path, **hyperparameters: Any) -> Path:
    from tests.fixtures import write_text_dataset
    from tuneserve.engines.training.spec import BackboneRef, Hyperparameters, TrainingSpec

    if hyperparameters.pop("write_data", True):
        write_text_dataset(train_path, {"sport": 20, "politics": 20}, seed=1)
    job_dir = data_dir / "jobs" / "job-00000000000000aa"
    job_dir.mkdir(parents=True)
    spec = TrainingSpec(job_id=job_dir.name, backbone=BackboneRef("tiny", str(backbone)), train_path=str(train_path),
                        labels=["politics", "sport"], output_dir=str(job_dir / "output"), device="cpu", threads=1,
                        hyperparameters=Hyperparameters(**hyperparameters))
    spec.save(job_dir / "spec.json")
    return job_dir / "spec.json"


def _runner(fake: Any, data_dir: Path) -> Any:
    from kubernetes import client

    from tuneserve.core.training.runners.kubernetes import KubernetesJobRunner

    api = client.ApiClient(client.Configuration(host=fake.url))
    return KubernetesJobRunner(api, KubernetesSettings(image="tuneserve:test"), namespace="tuneserve",
                               shape=JobShape(1, 1), data_dir=data_dir, poll_seconds=0.2)


async def test_runner_creates_the_job_and_relays_the_rank_zero_pods_events(
    fake_api: Any, tiny_backbone: Path, tmp_path: Path
) -> None:
    spec = _spec(tmp_path, tiny_backbone, tmp_path / "train.jsonl", **QUICK)
    events: list[dict[str, Any]] = []

    async def on_event(event: dict[str, Any]) -> None:
        events.append(event)

    outcome = await _runner(fake_api, tmp_path).run(spec, spec.parent / "worker.log", on_event, asyncio.Event())
    assert outcome.status == "succeeded", outcome.reason
    assert outcome.result["best_metric_name"] == "macro_f1"
    kinds = [event["kind"] for event in events]
    assert {"progress", "evaluation", "checkpoint", "export"} <= set(kinds)
    assert [e["step"] for e in events if e["kind"] == "progress"][-1] == QUICK["max_steps"]
    # The Job the fake ran is the one job_manifest builds, and the pod's whole log is kept beside the spec.
    name = job_name(spec)
    assert fake_api.jobs[name]["spec"]["template"]["spec"]["containers"][0]["command"][0] == "torchrun"
    assert ("POST", "/apis/batch/v1/namespaces/tuneserve/jobs") in fake_api.requests
    log = (spec.parent / "worker.log").read_text()
    assert '"kind": "result"' in log and "train_runtime" in log  # events and the Trainer's own output
    assert (spec.parent / "output" / "model.onnx").exists()


async def test_a_failing_worker_fails_the_job_with_its_reason(fake_api: Any, tiny_backbone: Path, tmp_path: Path) -> None:
    spec = _spec(tmp_path, tiny_backbone, tmp_path / "missing.jsonl", write_data=False, **QUICK)

    async def on_event(event: dict[str, Any]) -> None:
        pass

    outcome = await _runner(fake_api, tmp_path).run(spec, spec.parent / "worker.log", on_event, asyncio.Event())
    assert outcome.status == "failed"
    assert outcome.reason.startswith("FileNotFoundError") and "missing.jsonl" in outcome.reason, outcome.reason


async def test_cancel_deletes_the_job_in_the_foreground(fake_api: Any, tiny_backbone: Path, tmp_path: Path) -> None:
    spec = _spec(tmp_path, tiny_backbone, tmp_path / "train.jsonl", **{**QUICK, "max_steps": 100_000, "eval_steps": 0})
    cancel = asyncio.Event()

    async def on_event(event: dict[str, Any]) -> None:
        if event["kind"] == "progress":
            cancel.set()

    outcome = await asyncio.wait_for(
        _runner(fake_api, tmp_path).run(spec, spec.parent / "worker.log", on_event, cancel), timeout=240
    )
    assert outcome.status == "cancelled"
    assert fake_api.deletions == [(job_name(spec), "Foreground")]
    (pod,) = fake_api.pods[job_name(spec)]
    assert pod.proc.poll() is not None
    # rank 0 stopped cleanly on SIGTERM, as on any pod deletion (a node drain, an eviction): it saved a checkpoint
    assert '"kind": "preempted"' in (spec.parent / "worker.log").read_text()


async def test_a_job_the_api_refuses_fails_with_the_api_servers_message(fake_api: Any, tmp_path: Path) -> None:
    fake_api.forbidden.add("create jobs")
    job_dir = tmp_path / "jobs" / "job-00000000000000bb"
    job_dir.mkdir(parents=True)

    async def on_event(event: dict[str, Any]) -> None:
        pass

    outcome = await _runner(fake_api, tmp_path).run(job_dir / "spec.json", job_dir / "worker.log", on_event,
                                                    asyncio.Event())
    assert outcome.status == "failed"
    assert outcome.reason.startswith("could not create the Kubernetes Job tuneserve-job-00000000000000bb: HTTP 403")
    assert 'cannot create resource "jobs"' in outcome.reason


def test_a_multi_node_jobs_service_is_owned_by_the_job(fake_api: Any, tmp_path: Path) -> None:
    from kubernetes import client

    from tuneserve.core.training.runners.kubernetes import KubernetesJobRunner

    spec = tmp_path / "jobs" / "job-00000000000000cc" / "spec.json"
    spec.parent.mkdir(parents=True)
    api = client.ApiClient(client.Configuration(host=fake_api.url))
    runner = KubernetesJobRunner(api, KubernetesSettings(image="tuneserve:test"), namespace="tuneserve",
                                 shape=JobShape(2, 1), data_dir=tmp_path, poll_seconds=0.2)
    runner._create(spec)
    name = job_name(spec)
    (service,) = fake_api.services.values()
    # the reference by uid is what makes Kubernetes delete the Service with its Job (cancel, ttlSecondsAfterFinished)
    assert service["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": fake_api.jobs[name]["metadata"]["uid"]}
    ]


# --- settings that cannot work: refused at start-up ---------------------------------------------------------------


def _settings(tmp_path: Path, **training: Any) -> Settings:
    settings = Settings()
    settings.storage.data_dir = tmp_path / "data"
    for name, value in training.items():
        setattr(settings.training, name, value)
    return settings


def test_conflicting_runner_settings_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneserve.core.training.runners.factory import build_runner
    from tuneserve.core.training.runners.local import LocalProcessRunner
    from tuneserve.errors import ConfigError

    assert isinstance(build_runner(_settings(tmp_path, processes_per_job=4)), LocalProcessRunner)
    with pytest.raises(ConfigError, match=r"nodes_per_job = 2 needs training.runner = kubernetes"):
        build_runner(_settings(tmp_path, nodes_per_job=2))
    with pytest.raises(ConfigError, match=r"needs kubernetes.image \(TUNESERVE_KUBERNETES__IMAGE\)"):
        build_runner(_settings(tmp_path, runner="kubernetes"))
    relative = _settings(tmp_path, runner="kubernetes")
    relative.kubernetes.image, relative.storage.data_dir = "tuneserve:0.1.0", Path("data")
    with pytest.raises(ConfigError, match="absolute storage.data_dir"):
        build_runner(relative)
    # Outside a cluster, with no kubeconfig (or without the client at all): one line that says which.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    ready = _settings(tmp_path, runner="kubernetes")
    ready.kubernetes.image = "tuneserve:0.1.0"
    with pytest.raises(ConfigError, match="no in-cluster ServiceAccount and no kubeconfig|pip install"):
        build_runner(ready)


def test_tuneserve_serve_refuses_them_with_one_line(tmp_path: Path) -> None:
    import subprocess

    env = {key: value for key, value in os.environ.items() if not key.startswith("TUNESERVE_")}
    env |= {"TUNESERVE_TRAINING__NODES_PER_JOB": "2", "TUNESERVE_STORAGE__DATA_DIR": str(tmp_path / "data"),
            "TUNESERVE_SERVER__PORT": "0", "TUNESERVE_SERVER__METRICS_PORT": "-1"}
    run = subprocess.run([_tool("tuneserve"), "serve"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nodes_per_job = 2 needs training.runner = kubernetes" in lines[0], run.stderr
