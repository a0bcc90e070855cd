"""The kubernetes runner: Job and pod statuses map to the reasons a FAILED job reports; torchrun's failure summary
names the rank that failed.

No cluster runs here. The API interaction (create the Job, follow the rank-0 pod's log, delete it on cancel, read
why it failed) runs the official `kubernetes` client against `kubernetes_api.FakeKubernetes`, real HTTP on loopback
whose pods are real processes running the Job's own torchrun command; those tests need the client (the [kubernetes]
extra, in [dev]) and skip without it. What a fake cannot show (scheduling, DNS of the headless Service, a real
multi-node rendezvous, OOMKilled and deadlines set by a real kubelet) is covered only by the manifest checks
(test_manifests.py) and the status-mapping tests here.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tuneserve.core.training.runners.base import outcome_of
from tuneserve.core.training.runners.kubernetes import diagnose_job_failure
from tuneserve.core.training.runners.manifests import (
    INDEX_ANNOTATION,
    JobShape,
    job_name,
)
from tuneserve.settings import KubernetesSettings


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
