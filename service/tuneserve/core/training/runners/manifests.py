"""The Kubernetes objects of one fine-tune under `training.runner = kubernetes`, as plain dicts (the API's JSON):
a `batch/v1` Indexed Job of `nodes` pods, each running `torchrun --nproc_per_node=P` of the training worker, and for
multi-node Jobs a headless Service through which the pods find the rank-0 pod (`<job>-0.<service>`) to rendezvous.

Pure functions of the settings: `tests/core/training/runners/test_kubernetes.py` validates their output with
`kubernetes-validate --strict`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneserve.core.training.runners.base import WORKER_MODULE
from tuneserve.settings import KubernetesSettings

Manifest = dict[str, Any]

CONTAINER = "trainer"
# NOTE: the Job controller sets this annotation on each pod of an Indexed Job (and the JOB_COMPLETION_INDEX variable
# from it); reading it through the downward API keeps the torchrun command's $(NODE_RANK) explicit.
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
JOB_LABEL = "tuneserve.io/training-job"
JOB_ID_LABEL = "tuneserve.io/job-id"
# The Deployment's user (Dockerfile `USER 10001`): the pods write to the same volume as the server.
_UID = 10001
# A pod's hostname is `<job name>-<index>` and must fit a DNS label (63) with room for the index.
_MAX_NAME = 52


@dataclass(frozen=True)
class JobShape:
    """nodes pods x processes torchrun processes each; gpu: one nvidia.com/gpu per process."""

    nodes: int = 1
    processes: int = 1
    gpu: bool = False


def job_name(spec_path: Path) -> str:
    """`tuneserve-<job id>` for a job's spec.json, with the baseline's kind for its spec-<kind>.json: a DNS label."""
    suffix = spec_path.stem.removeprefix("spec").strip("-_")
    raw = f"tuneserve-{spec_path.parent.name}" + (f"-{suffix}" if suffix else "")
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower())[:_MAX_NAME].strip("-")
    return name


def owner_labels(name: str, job_id: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "tuneserve",
        "app.kubernetes.io/component": "training",
        "app.kubernetes.io/managed-by": "tuneserve",
        JOB_ID_LABEL: job_id,
        JOB_LABEL: name,
    }


def torchrun_command(spec_path: Path, shape: JobShape, *, name: str, port: int) -> list[str]:
    worker = ["-m", WORKER_MODULE, str(spec_path)]
    if shape.nodes == 1:
        # NOTE: --standalone: a rendezvous inside the pod, no Service needed.
        return ["torchrun", "--standalone", "--nnodes=1", f"--nproc_per_node={shape.processes}", *worker]
    return [
        "torchrun", f"--nnodes={shape.nodes}", f"--nproc_per_node={shape.processes}", "--node_rank=$(NODE_RANK)",
        f"--master_addr={name}-0.{name}", f"--master_port={port}", *worker,
    ]


def job_manifest(
    spec_path: Path, shape: JobShape, settings: KubernetesSettings, *, job_id: str, data_dir: Path
) -> Manifest:
    name = job_name(spec_path)
    labels = owner_labels(name, job_id)
    limits: dict[str, str] = {"cpu": settings.cpu, "memory": settings.memory}
    if shape.gpu:
        limits["nvidia.com/gpu"] = str(shape.processes)
    container: Manifest = {
        "name": CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": torchrun_command(spec_path, shape, name=name, port=settings.rendezvous_port),
        "env": [
            {"name": "NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}}},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        # requests == limits: Guaranteed QoS, like the server's pod.
        "resources": {"requests": dict(limits), "limits": limits},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            # The server's volume at the server's path: the spec, the datasets and the output use absolute paths.
            {"name": "data", "mountPath": str(data_dir)},
            {"name": "tmp", "mountPath": "/tmp"},
            # NOTE: torch's shared-memory tensors and NCCL need more than the runtime's 64 MiB /dev/shm.
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    if shape.nodes > 1:
        container["ports"] = [{"name": "rendezvous", "containerPort": settings.rendezvous_port, "protocol": "TCP"}]
    pod_spec: Manifest = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # training never calls the Kubernetes API
        "enableServiceLinks": False,
        # SIGTERM (a cancel deletes the Job) reaches torchrun, which passes it to every rank; they stop at the next
        # step together and rank 0 reports "cancelled".
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": _UID,
            "runAsGroup": _UID,
            "fsGroup": _UID,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": settings.data_claim_name}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
        ],
    }
    if shape.nodes > 1:
        pod_spec["subdomain"] = name  # pod DNS names <job>-<index>.<service>: the headless Service of the same name
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)
    if shape.gpu:
        pod_spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "completionMode": "Indexed",
            "completions": shape.nodes,
            "parallelism": shape.nodes,
            # NOTE: no retries: a failed rank fails the fine-tune, and the job manager reports why.
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            "activeDeadlineSeconds": settings.active_deadline_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def service_manifest(spec_path: Path, settings: KubernetesSettings, *, job_id: str) -> Manifest:
    """The headless Service of a multi-node Job: DNS names for its pods, ready or not (the rendezvous comes first)."""
    name = job_name(spec_path)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": owner_labels(name, job_id)},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {JOB_LABEL: name},
            "ports": [
                {"name": "rendezvous", "port": settings.rendezvous_port, "targetPort": settings.rendezvous_port,
                 "protocol": "TCP"},
            ],
        },
    }
