"""What Evaluate reports for one model version on one dataset (`evaluator.Evaluator` fills it in; the comparison and
the transport read it)."""

from __future__ import annotations

from dataclasses import dataclass


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
    per_class: list[ClassReport]
    labels: list[str]                 # confusion matrix order: rows true, columns predicted
    confusion_matrix: list[list[int]]
    num_unknown_labels: int
    duration_seconds: float
    runtime: str = "onnxruntime"
