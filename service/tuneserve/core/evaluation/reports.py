"""What Evaluate reports for one model version on one dataset (`evaluator.Evaluator` fills it in; the comparison and
the transport read it).

`metrics` holds every metric of the model's task by name (`tuneserve.tasks`: Task.report). The single-label fields
(accuracy, macro_*, weighted_*) predate tasks: they repeat the metrics of the same name, and are 0 for a task that has
no metric of that name (multi-label fills macro_f1 only)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tuneserve.tasks import calibration
from tuneserve.tasks.base import SpanError, TaskReport

CLASSIFICATION_METRICS = (
    "accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_precision", "weighted_recall", "weighted_f1",
)


@dataclass(frozen=True)
class ClassReport:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class EvaluationReport:
    model_id: str
    model_version: int
    dataset_id: str
    num_examples: int
    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    weighted_precision: float
    weighted_recall: float
    weighted_f1: float
    per_class: list[ClassReport]      # per class (classification) or per label (multi-label)
    labels: list[str]                 # confusion matrix order: rows true, columns predicted
    confusion_matrix: list[list[int]]
    num_unknown_labels: int
    duration_seconds: float
    runtime: str = "onnxruntime"
    task: str = "classification"
    metrics: dict[str, float] = field(default_factory=dict)       # every metric of the task, by name
    residuals: dict[str, float] = field(default_factory=dict)     # regression: mean, std, median_abs, p90_abs, max_abs
    points: list[tuple[float, float]] = field(default_factory=list)  # regression: (true, predicted) of a sample
    ece: float | None = None          # classification, multi-label: expected calibration error of the served scores
    reliability: list[tuple[float, float, int]] = field(default_factory=list)  # (confidence, accuracy, rows) per bin
    # With ece: what a perfectly calibrated model with these scores would show on these rows (calibration.consistency):
    # its median ECE, the p-value of the observed one, and each reliability bin's 5-95% band of accuracies.
    ece_if_calibrated: float | None = None
    ece_p_value: float | None = None
    reliability_bands: list[tuple[float, float]] = field(default_factory=list)
    span_errors: list[SpanError] = field(default_factory=list)       # token classification: missed/spurious examples
    span_counts: dict[str, int] = field(default_factory=dict)        # token classification: missed, spurious, wrong_type

    @classmethod
    def of(
        cls, task: str, report: TaskReport, *, model_id: str, model_version: int, dataset_id: str, num_examples: int,
        duration_seconds: float,
    ) -> EvaluationReport:
        """The report of a task's figures (`Task.report`) for one model version on one dataset."""
        m = report.metrics
        ece = m.get("ece")
        consistent = calibration.consistency(report.reliability, ece) if ece is not None else None
        return cls(
            model_id=model_id, model_version=model_version, dataset_id=dataset_id, num_examples=num_examples,
            accuracy=m.get("accuracy", 0.0), macro_precision=m.get("macro_precision", 0.0),
            macro_recall=m.get("macro_recall", 0.0), macro_f1=m.get("macro_f1", 0.0),
            weighted_precision=m.get("weighted_precision", 0.0), weighted_recall=m.get("weighted_recall", 0.0),
            weighted_f1=m.get("weighted_f1", 0.0),
            per_class=[ClassReport(r.label, r.precision, r.recall, r.f1, r.support) for r in report.per_label],
            labels=list(report.confusion_labels), confusion_matrix=[list(row) for row in report.confusion],
            num_unknown_labels=report.num_unknown_labels, duration_seconds=duration_seconds, task=task,
            metrics=dict(m), residuals=dict(report.residuals), points=list(report.points), ece=ece,
            reliability=list(report.reliability), span_errors=list(report.span_errors),
            span_counts=dict(report.span_counts),
            ece_if_calibrated=consistent.ece_if_calibrated if consistent else None,
            ece_p_value=consistent.p_value if consistent else None,
            reliability_bands=consistent.bands if consistent else [],
        )

    def figures(self) -> dict[str, float]:
        """Every metric by name: `metrics`, or the single-label fields of a report made without it."""
        return self.metrics or {name: getattr(self, name) for name in CLASSIFICATION_METRICS}
