"""Runs each fine-tune as a Kubernetes Job (`training.runner = kubernetes`), with the same contract as the local
runner: the rank-0 pod's log carries the worker's JSON-lines events, a cancel stops the training, and the outcome
says why a job failed (a rank's exception, an OOMKilled pod, the Job's deadline, an image that cannot be pulled).

The official `kubernetes` client (the [kubernetes] extra) talks to the API server with the server pod's
ServiceAccount (in-cluster config; a kubeconfig outside a cluster). Its calls block, so they run in threads; the
event loop only reads lines. The manifests come from `kubernetes_manifests`; the RBAC they need is in
deploy/components/kubernetes-runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from tuneserve.core.training.runners.base import EventHandler, WorkerOutcome, outcome_of, parse_event
from tuneserve.core.training.runners.manifests import (
    CONTAINER,
    INDEX_ANNOTATION,
    JOB_LABEL,
    JobShape,
    job_manifest,
    job_name,
    service_manifest,
)
from tuneserve.errors import ConfigError
from tuneserve.settings import KubernetesSettings, Settings

if TYPE_CHECKING:
    import urllib3

log = logging.getLogger(__name__)

_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# Container states that never get better by waiting (a wrong image name, a missing Secret or ConfigMap).
_CANNOT_START = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
                 "CreateContainerError"}
_LOG_TAIL_LINES = 80


@dataclass(frozen=True)
class JobFailure:
    """Why a Job failed. decisive: Kubernetes' own verdict (OOMKilled, deadline, cannot start) that outranks what
    the worker said; otherwise `exit_reason` joins the worker's events and the log tail of `pod`."""

    reason: str
    decisive: bool
    pod: str | None = None


def diagnose_job_failure(job: dict[str, Any], pods: list[dict[str, Any]]) -> JobFailure:
    """The failure of a Job from its status and its pods' statuses, as the API returns them (camelCase dicts)."""
    failed = [c for c in (job.get("status") or {}).get("conditions") or []
              if c.get("type") == "Failed" and c.get("status") == "True"]
    condition = failed[0] if failed else {}
    if condition.get("reason") == "DeadlineExceeded":
        limit = (job.get("spec") or {}).get("activeDeadlineSeconds")
        return JobFailure(f"the training Job ran past its activeDeadlineSeconds ({limit} s) and Kubernetes stopped it "
                          "(kubernetes.active_deadline_seconds)", decisive=True)
    exited: JobFailure | None = None
    for pod in sorted(pods, key=_index):
        name = pod["metadata"]["name"]
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            state = status.get("state") or {}
            terminated, waiting = state.get("terminated") or {}, state.get("waiting") or {}
            if terminated.get("reason") == "OOMKilled":
                limit = _memory_limit(pod)
                return JobFailure(f"training pod {name} (node {_index(pod)}) was OOMKilled: it needs more than its "
                                  f"memory limit {limit} (kubernetes.memory) or a smaller batch_size", decisive=True)
            if waiting.get("reason") in _CANNOT_START:
                return JobFailure(f"training pod {name} cannot start: {waiting['reason']}: "
                                  f"{waiting.get('message', '')}".strip(), decisive=True)
            if terminated.get("exitCode") not in (None, 0) and exited is None:
                exited = JobFailure(f"pod {name} (node {_index(pod)}) exited with code {terminated['exitCode']}",
                                    decisive=False, pod=name)
    if exited is not None:
        return exited
    detail = ": ".join(x for x in (condition.get("reason"), condition.get("message")) if x)
    return JobFailure(f"Kubernetes Job failed: {detail or 'no reason given'}", decisive=False)


def cannot_start(pod: dict[str, Any]) -> str | None:
    """The reason a pod's container will never start, if that is its state."""
    failure = diagnose_job_failure({}, [pod])
    return failure.reason if failure.decisive else None


def _index(pod: dict[str, Any]) -> int:
    return int(((pod.get("metadata") or {}).get("annotations") or {}).get(INDEX_ANNOTATION, "0"))


def _memory_limit(pod: dict[str, Any]) -> str:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == CONTAINER:
            return str(((container.get("resources") or {}).get("limits") or {}).get("memory", "?"))
    return "?"


class KubernetesJobRunner:
    def __init__(
        self, api_client: Any, settings: KubernetesSettings, *, namespace: str, shape: JobShape, data_dir: Path,
        poll_seconds: float = 2.0,
    ) -> None:
        from kubernetes import client

        self._api = api_client
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._settings = settings
        self._namespace = namespace
        self._shape = shape
        self._data_dir = data_dir
        self._poll = poll_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> KubernetesJobRunner:
        k8s, training = settings.kubernetes, settings.training
        if not k8s.image:
            raise ConfigError("training.runner = kubernetes needs kubernetes.image (TUNESERVE_KUBERNETES__IMAGE), "
                              "the image of the training pods")
        if not settings.storage.data_dir.is_absolute():
            raise ConfigError(f"training.runner = kubernetes needs an absolute storage.data_dir (training pods mount "
                              f"the volume at the same path), got {settings.storage.data_dir}")
        try:
            import kubernetes
        except ImportError as exc:
            raise ConfigError("training.runner = kubernetes needs the Kubernetes client: "
                              "pip install 'tuneserve[server,kubernetes]'") from exc
        try:
            kubernetes.config.load_incluster_config()
        except kubernetes.config.ConfigException:
            try:
                kubernetes.config.load_kube_config()
            except (kubernetes.config.ConfigException, OSError) as exc:
                raise ConfigError(f"training.runner = kubernetes: no in-cluster ServiceAccount and no kubeconfig "
                                  f"({exc})") from exc
        namespace = k8s.namespace or (_NAMESPACE_FILE.read_text().strip() if _NAMESPACE_FILE.exists() else "default")
        shape = JobShape(training.nodes_per_job, training.processes_per_job, k8s.gpu)
        return cls(kubernetes.client.ApiClient(), k8s, namespace=namespace, shape=shape,
                   data_dir=settings.storage.data_dir)

    async def run(
        self, spec_path: Path, log_path: Path, on_event: EventHandler, cancel: asyncio.Event
    ) -> WorkerOutcome:
        name = job_name(spec_path)
        try:
            await asyncio.to_thread(self._create, spec_path)
        except Exception as exc:  # NOTE: API errors (RBAC, quota, admission) are this job's failure, not the server's
            log.warning("could not create Kubernetes Job %s: %s", name, exc)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._delete, name)  # the Job, when only its Service was refused
            return WorkerOutcome("failed", reason=f"could not create the Kubernetes Job {name}: {_api_error(exc)}")
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        stop = threading.Event()
        follower = asyncio.ensure_future(asyncio.to_thread(
            self._follow, name, log_path, lambda line: loop.call_soon_threadsafe(lines.put_nowait, line), stop
        ))
        canceller = asyncio.create_task(self._delete_on_cancel(name, cancel))
        finals: list[dict[str, Any]] = []
        try:
            while (line := await lines.get()) is not None:
                event = parse_event(line)
                if event is None:
                    continue
                if event["kind"] in ("result", "failed", "cancelled"):
                    finals.append(event)
                else:
                    await on_event(event)
            failure, log_lines = await follower
        except Exception as exc:
            stop.set()
            log.warning("lost track of Kubernetes Job %s: %s", name, exc)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._delete, name)
            return WorkerOutcome("failed", reason=f"lost track of the Kubernetes Job {name}: {_api_error(exc)}")
        except BaseException:
            # NOTE: the server is stopping (or this task was cancelled): the Job must not run on unobserved.
            stop.set()
            await asyncio.shield(asyncio.to_thread(self._delete, name))
            raise
        finally:
            canceller.cancel()
        if failure is not None and failure.decisive and not cancel.is_set():
            return WorkerOutcome("failed", reason=failure.reason)
        return outcome_of(finals, failure.reason if failure else "", cancel.is_set(), log_lines)

    # -- API calls (blocking: run in threads) -------------------------------------------------------------------

    def _create(self, spec_path: Path) -> None:
        job_id = spec_path.parent.name
        job = job_manifest(spec_path, self._shape, self._settings, job_id=job_id, data_dir=self._data_dir)
        self._delete(job["metadata"]["name"], wait=True)  # left over from a run a restart interrupted
        # NOTE: the client serialises a dict body as it is; its annotations name only the model classes (V1Job...)
        created = self._batch.create_namespaced_job(self._namespace, job)  # type: ignore[arg-type]
        if self._shape.nodes > 1:
            service = service_manifest(spec_path, self._settings, job_id=job_id)
            # NOTE: owned by the Job, so Kubernetes deletes it with the Job (cancel, ttlSecondsAfterFinished).
            owner = self._dict(created)["metadata"]
            service["metadata"]["ownerReferences"] = [{
                "apiVersion": "batch/v1", "kind": "Job", "name": owner["name"], "uid": owner["uid"],
            }]
            self._core.create_namespaced_service(self._namespace, service)  # type: ignore[arg-type]
        log.info("created Kubernetes Job %s/%s (%d x %d)", self._namespace, job["metadata"]["name"],
                 self._shape.nodes, self._shape.processes)

    def _delete(self, name: str, wait: bool = False) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._batch.delete_namespaced_job(name, self._namespace, propagation_policy="Foreground")
        except ApiException as exc:
            if exc.status != 404:
                raise
            return
        deadline = time.monotonic() + 120
        while wait and time.monotonic() < deadline and self._read_job(name) is not None:
            time.sleep(self._poll)

    async def _delete_on_cancel(self, name: str, cancel: asyncio.Event) -> None:
        await cancel.wait()
        # NOTE: Foreground: the pods get SIGTERM and their grace period; torchrun passes it to every rank, which stop
        # as if preempted, and rank 0 writes "preempted" before the log stream ends (the manager then removes the
        # checkpoint, as it does for any job that ends).
        await asyncio.to_thread(self._delete, name)

    def _read_job(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._dict(self._batch.read_namespaced_job(name, self._namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _pods(self, name: str) -> list[dict[str, Any]]:
        pods = self._core.list_namespaced_pod(self._namespace, label_selector=f"{JOB_LABEL}={name}")
        return [self._dict(pod) for pod in pods.items]

    def _dict(self, obj: Any) -> dict[str, Any]:
        return dict(self._api.sanitize_for_serialization(obj))

    def _follow(
        self, name: str, log_path: Path, emit: Callable[[str | None], object], stop: threading.Event
    ) -> tuple[JobFailure | None, list[str]]:
        """Wait for the rank-0 pod, copy its log into log_path and emit its lines, then return how the Job ended."""
        try:
            with open(log_path, "a", encoding="utf-8") as log_file:
                pod, failure = self._wait_for_rank_zero(name, stop)
                if failure is not None:
                    self._delete(name)
                    return failure, []
                if pod is not None:
                    self._stream_log(pod, log_file, emit, stop)
                return self._ending(name, stop)
        finally:
            emit(None)

    def _wait_for_rank_zero(self, name: str, stop: threading.Event) -> tuple[str | None, JobFailure | None]:
        while not stop.is_set():
            pods = self._pods(name)
            for pod in pods:
                reason = cannot_start(pod)
                if reason is not None:
                    return None, JobFailure(reason, decisive=True)
            rank_zero = [pod for pod in pods if _index(pod) == 0]
            if rank_zero and (rank_zero[0].get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed"):
                return rank_zero[0]["metadata"]["name"], None
            job = self._read_job(name)
            if job is None or _finished(job):
                return None, None  # deleted (cancel) or failed before the pod ran (deadline): _ending says which
            stop.wait(self._poll)
        return None, None

    def _stream_log(
        self, pod: str, log_file: TextIO, emit: Callable[[str | None], object], stop: threading.Event
    ) -> None:
        from kubernetes.client.exceptions import ApiException

        seen = 0
        while not stop.is_set():
            try:
                # NOTE: _preload_content=False returns the raw response; the client's annotation says str
                stream = cast("urllib3.HTTPResponse", self._core.read_namespaced_pod_log(
                    pod, self._namespace, container=CONTAINER, follow=True, _preload_content=False
                ))
            except ApiException as exc:
                if exc.status in (400, 404):  # gone (deleted) or no longer has a container to read
                    return
                raise
            try:
                # NOTE: the API server may end a long follow; on reconnect the log starts over, so skip what we saw.
                for number, raw in enumerate(_lines(stream)):
                    if number < seen:
                        continue
                    seen += 1
                    line = raw.decode("utf-8", errors="replace").rstrip("\r")
                    log_file.write(line + "\n")
                    log_file.flush()  # NOTE: live, like the local worker's stderr
                    emit(line)
            finally:
                stream.release_conn()
            with contextlib.suppress(ApiException):
                phase = self._dict(self._core.read_namespaced_pod(pod, self._namespace))["status"].get("phase")
                if phase in ("Succeeded", "Failed"):
                    return
                continue
            return

    def _ending(self, name: str, stop: threading.Event) -> tuple[JobFailure | None, list[str]]:
        """Wait for the Job's Complete or Failed condition; None when it completed (or was deleted by a cancel)."""
        deadline = time.monotonic() + 300
        while True:
            job = self._read_job(name)
            if job is None:
                return JobFailure("the training Job was deleted", decisive=False), []
            if _condition(job, "Complete"):
                return None, []
            if _condition(job, "Failed"):
                failure = diagnose_job_failure(job, self._pods(name))
                return failure, self._log_tail(failure.pod) if failure.pod else []
            if stop.is_set() or time.monotonic() > deadline:
                return JobFailure("the training Job did not finish after its rank-0 pod ended", decisive=False), []
            stop.wait(self._poll)

    def _log_tail(self, pod: str) -> list[str]:
        from kubernetes.client.exceptions import ApiException

        with contextlib.suppress(ApiException):
            text = self._core.read_namespaced_pod_log(pod, self._namespace, container=CONTAINER,
                                                      tail_lines=_LOG_TAIL_LINES)
            return [line for line in str(text).splitlines() if line.strip()]
        return []


def _lines(stream: Any) -> Iterator[bytes]:
    """The lines of a followed log as its chunks arrive (iterating the response itself waits for 64 KiB)."""
    pending = b""
    for chunk in stream.stream(amt=None, decode_content=False):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from lines
    if pending:
        yield pending


def _api_error(exc: Exception) -> str:
    """One line for an API error: the API server's own message where it sent a Status."""
    status, body = getattr(exc, "status", None), getattr(exc, "body", None)
    if status is not None:
        message = ""
        with contextlib.suppress(ValueError, TypeError):
            message = json.loads(body).get("message", "") if body else ""
        return f"HTTP {status} {getattr(exc, 'reason', '')}: {message}".strip().rstrip(":")
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


def _condition(job: dict[str, Any], kind: str) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def _finished(job: dict[str, Any]) -> bool:
    return _condition(job, "Complete") or _condition(job, "Failed")
