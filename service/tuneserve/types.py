"""Typed records that flow between the store, the core and the transport. Protobuf stays at the edge
(`tuneserve.grpc.v1.converters` turns these into messages and back)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class JobState(str, enum.Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class VersionState(str, enum.Enum):
    TRAINING = "TRAINING"
    READY = "READY"
    FAILED = "FAILED"


@dataclass
class DatasetRecord:
    id: str
    name: str
    format: str                     # csv | jsonl
    modality: str                   # text
    num_rows: int
    labels: list[str]
    label_counts: dict[str, int]
    num_duplicates: int
    size_bytes: int
    sha256: str
    create_time: float
    task: str = "classification"    # tuneserve.tasks name: classification | multi_label | regression
    text_pairs: bool = False        # rows carry "text_pair" beside "text"
    stats: dict[str, Any] = field(default_factory=dict)   # multi-label {"labels_per_row": {mean, max,
                                    # rows_without_labels}}; regression {"target": {min, max, mean, std, p05, p25,
                                    # median, p75, p95}}


@dataclass
class JobRecord:
    id: str
    state: JobState
    dataset_id: str
    validation_dataset_id: str
    backbone: str
    hyperparameters: dict[str, Any]
    model_id: str
    model_version: int
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    create_time: float = 0.0
    start_time: float = 0.0
    end_time: float = 0.0
    restarts: int = 0               # times the worker was started again after it died (training.max_restarts)
    task: str = "classification"    # the dataset's
    text_pairs: bool = False


@dataclass
class JobEventRecord:
    job_id: str
    sequence: int
    time: float
    kind: str                       # state_changed | progress | evaluation | checkpoint | early_stopped | export
                                    # | unfrozen (gradual unfreezing) | baseline (a baseline run starts)
    data: dict[str, Any]
    message: str = ""


@dataclass
class ModelVersionRecord:
    model_id: str
    version: int
    state: VersionState
    job_id: str
    validation_metrics: dict[str, float] = field(default_factory=dict)
    onnx_size_bytes: int = 0
    create_time: float = 0.0


@dataclass
class ModelRecord:
    id: str
    name: str
    modality: str
    backbone: str
    labels: list[str]
    create_time: float
    versions: list[ModelVersionRecord] = field(default_factory=list)
    aliases: dict[str, int] = field(default_factory=dict)   # user aliases -> version ("latest" is implicit)
    kind: str = "finetuned"         # finetuned | frozen | scratch (a baseline trained by the same job)
    source_job_id: str = ""         # the job that created it
    task: str = "classification"
    text_pairs: bool = False

    @property
    def latest_ready(self) -> ModelVersionRecord | None:
        ready = [v for v in self.versions if v.state is VersionState.READY]
        return max(ready, key=lambda v: v.version) if ready else None


@dataclass
class Page:
    """Offset-based page token: opaque to clients, the number of rows already returned."""

    size: int
    offset: int
