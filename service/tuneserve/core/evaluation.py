"""Evaluate: run a model version's served ONNX graph over a dataset and report classification metrics."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from tuneserve.core.datasets import DatasetManager
from tuneserve.core.inference import InferenceService
from tuneserve.core.registry import ModelRegistry
from tuneserve.errors import InvalidArgument

_BATCH = 64


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


class Evaluator:
    def __init__(self, registry: ModelRegistry, datasets: DatasetManager, inference: InferenceService) -> None:
        self._registry = registry
        self._datasets = datasets
        self._inference = inference

    async def evaluate(self, model_id: str, version: int, dataset_id: str) -> EvaluationReport:
        if not model_id or not dataset_id:
            raise InvalidArgument("model_id and dataset_id are required")
        if version < 0:
            raise InvalidArgument("version must be >= 0 (0 = latest READY version)")
        started = time.perf_counter()
        servable = await self._registry.servable(model_id, version)
        rows = await self._datasets.read_rows(dataset_id)
        texts = [text for text, _ in rows]
        probs = [await self._inference.probabilities(servable, texts[i:i + _BATCH]) for i in range(0, len(texts), _BATCH)]
        predicted = np.concatenate(probs).argmax(axis=1)
        model_labels = servable.model.labels
        y_pred = [model_labels[i] for i in predicted]
        y_true = [label for _, label in rows]
        report = await asyncio.to_thread(_metrics, y_true, y_pred, model_labels)
        return EvaluationReport(
            model_id=model_id, model_version=servable.version.version, dataset_id=dataset_id,
            duration_seconds=time.perf_counter() - started, **report,
        )


def _metrics(y_true: list[str], y_pred: list[str], model_labels: list[str]) -> dict:
    unknown = sorted(set(y_true) - set(model_labels))
    labels = [*model_labels, *unknown]
    macro = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    weighted = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return dict(
        num_examples=len(y_true), accuracy=float(accuracy_score(y_true, y_pred)),
        macro_precision=float(macro[0]), macro_recall=float(macro[1]), macro_f1=float(macro[2]),
        weighted_precision=float(weighted[0]), weighted_recall=float(weighted[1]), weighted_f1=float(weighted[2]),
        per_class=[ClassReport(lab, float(p[i]), float(r[i]), float(f[i]), int(s[i])) for i, lab in enumerate(labels)],
        labels=labels, confusion_matrix=confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        num_unknown_labels=sum(1 for y in y_true if y in unknown),
    )
