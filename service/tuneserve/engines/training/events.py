"""The events a training worker writes on its event stream, one JSON line each (shapes documented in `spec.py`).

This module imports only the standard library: the worker loads it before torch, so that it can report a failure
that happens while the heavy libraries import.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

if TYPE_CHECKING:
    from tuneserve.engines.export.text import ExportReport


@dataclass
class WorkerEvent:
    kind: ClassVar[str]
    message: str = field(default="", kw_only=True)

    def to_json(self) -> str:
        """One JSON line; fields left None and an empty message are left out."""
        body = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        if not body.get("message"):
            body.pop("message", None)
        return json.dumps({"kind": self.kind, **body})


@dataclass
class ProgressEvent(WorkerEvent):
    kind: ClassVar[str] = "progress"
    step: int
    total_steps: int
    epoch: float
    eta_seconds: float
    train_loss: float
    learning_rate: float
    samples_per_second: float


@dataclass
class EvaluationEvent(WorkerEvent):
    kind: ClassVar[str] = "evaluation"
    step: int
    epoch: float
    validation_loss: float
    metrics: dict[str, float]


@dataclass
class CheckpointEvent(WorkerEvent):
    kind: ClassVar[str] = "checkpoint"
    step: int
    is_best: bool
    metric: float | None  # the best-model metric at this step; None for a checkpoint without an evaluation (preempted)


@dataclass
class EarlyStoppedEvent(WorkerEvent):
    kind: ClassVar[str] = "early_stopped"
    step: int
    reason: str


@dataclass
class ExportEvent(WorkerEvent):
    kind: ClassVar[str] = "export"
    format: str
    parity_max_abs_diff: float
    parity_examples: int
    size_bytes: int

    @classmethod
    def of(cls, report: ExportReport, *, examples: str) -> ExportEvent:
        """The fp32 ONNX export that `report` describes; `examples` names what parity was checked on ("texts")."""
        return cls(
            format="onnx",
            parity_max_abs_diff=report.parity.max_abs_diff,
            parity_examples=report.parity.examples,
            size_bytes=report.size_bytes,
            message=f"exported ONNX ({report.size_bytes / 1e6:.1f} MB), parity max |logit diff| "
            f"{report.parity.max_abs_diff:.1e} on {report.parity.examples} {examples}",
        )


@dataclass
class UnfrozenEvent(WorkerEvent):
    """Gradual unfreezing opened more of the backbone at the start of an epoch."""

    kind: ClassVar[str] = "unfrozen"
    epoch: int
    trainable_blocks: int
    total_blocks: int
    embeddings: bool


@dataclass
class ResultEvent(WorkerEvent):
    """The fields of tuneserve.v1.JobResult; the last line of a successful run."""

    kind: ClassVar[str] = "result"
    validation_metrics: dict[str, float]
    best_metric_name: str
    best_metric: float
    best_step: int
    stopped_early: bool
    train_seconds: float
    samples_per_second: float
    train_examples: int
    validation_examples: int
    parity_max_abs_diff: float
    device: str
    precision: str
    final_train_loss: float
    # NOTE: tuneserve.v1.LearningCurvePoint and FitDiagnosis as dicts, so this module stays standard-library only.
    learning_curve: list[dict[str, Any]] = field(default_factory=list)
    fit: dict[str, Any] = field(default_factory=dict)
    variant_macro_f1: dict[str, float] = field(default_factory=dict)  # classification: variant_metrics (macro_f1)
    variant_metric: str = ""                                          # the task's guard metric
    variant_metrics: dict[str, float] = field(default_factory=dict)   # its value for fp32, and int8 with ExportSpec.int8
    label_thresholds: dict[str, float] = field(default_factory=dict)  # multi-label: each label's tuned threshold
    # NOTE: tuneserve.v1.ConfusionMatrix and ClassMetrics as dicts: the best checkpoint on the validation rows.
    validation_confusion_matrix: dict[str, Any] = field(default_factory=dict)
    validation_per_class: list[dict[str, Any]] = field(default_factory=list)
    trials: list[dict[str, Any]] = field(default_factory=list)        # FineTune(search=N): TrialEvent fields, each
    calibration: dict[str, Any] = field(default_factory=dict)        # tuneserve.v1.Calibration; {} = none fitted
    # NOTE: with refit, the served model was retrained on train+validation (engines/training/refit.py); every figure
    # above is still the first run's best checkpoint on the validation rows, which the served model trained on.
    refit: bool = False
    refit_steps: int = 0                                              # the steps the refit trained
    refit_examples: int = 0                                           # the rows it trained on (train + validation)
    refit_seconds: float = 0.0                                        # its training time (a soup's: all members')
    refit_members: int = 0                                            # refits averaged into the served model (soup.py)
    max_seq_length: int = 0                                           # text: the token length used
    auto_actions: list[str] = field(default_factory=list)             # what auto did during the run, one sentence each

    def fields(self) -> dict[str, Any]:
        """The JobResult fields alone (no kind, no message), as metrics.json stores them."""
        body = dataclasses.asdict(self)
        del body["message"]
        return body


@dataclass
class TrialEvent(WorkerEvent):
    """A search trial started (state TRIAL_STATE_RUNNING) or ended; the fields of tuneserve.v1.Trial."""

    kind: ClassVar[str] = "trial"
    number: int
    state: str                          # tuneserve.v1.TrialState name: TRIAL_STATE_RUNNING | _COMPLETE | _PRUNED | _FAILED
    params: dict[str, str]              # the trial's sampled hyperparameters, as text
    metric: float | None = None         # its best validation value of the best-model metric (None: no evaluation)
    duration_seconds: float = 0.0
    steps: int = 0
    best: bool = False
    reason: str = ""

    def fields(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        del body["message"]
        return {k: v for k, v in body.items() if v is not None}


@dataclass
class RefitEvent(WorkerEvent):
    """The refit (engines/training/refit.py) starts: a fresh model trains on `examples` rows for `steps` steps."""

    kind: ClassVar[str] = "refit"
    steps: int
    examples: int
    best_step: int


@dataclass
class FailedEvent(WorkerEvent):
    kind: ClassVar[str] = "failed"
    reason: str


@dataclass
class CancelledEvent(WorkerEvent):
    kind: ClassVar[str] = "cancelled"
    step: int


@dataclass
class PreemptedEvent(WorkerEvent):
    """Stopped by SIGTERM after saving `checkpoint`, which a worker started on the same spec resumes from."""

    kind: ClassVar[str] = "preempted"
    step: int
    checkpoint: str


class EventWriter:
    """Writes events as JSON lines to the worker's event stream, flushing each so the manager sees it at once."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, event: WorkerEvent) -> None:
        self._stream.write(event.to_json() + "\n")
        self._stream.flush()


class PrefixedWriter(EventWriter):
    """Another writer's events, their messages prefixed (a search trial's "[trial 3] ", a refit's "[refit] ")."""

    def __init__(self, writer: EventWriter, prefix: str) -> None:
        self._writer = writer
        self._prefix = prefix

    def write(self, event: WorkerEvent) -> None:
        self._writer.write(dataclasses.replace(event, message=self._prefix + event.message))
