"""Evaluate: run a model version's served ONNX graph over a dataset and report classification metrics; `compare` runs
several versions over the same rows and tests their paired predictions (`tuneserve.core.evaluation.comparison`). The dataset's
modality must be the model's: an image model reads its images' bytes from the dataset directory, a batch at a time."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from tuneserve.core.data.datasets import DatasetManager, Row
from tuneserve.core.evaluation.comparison import Comparison, compare_pair
from tuneserve.core.evaluation.reports import ClassReport, EvaluationReport
from tuneserve.core.serving.inference import InferenceService
from tuneserve.core.serving.resolver import Target, VersionRef
from tuneserve.errors import InvalidArgument

_BATCH = 64
# NOTE: each compared model is a full pass over the dataset; a handful answers "did transfer help" within a deadline.
MAX_COMPARED = 8


@dataclass(frozen=True)
class ComparisonResult:
    report: EvaluationReport
    compared: list[EvaluationReport]      # one per compared model, in request order
    comparisons: list[Comparison]         # report vs each compared model, in request order


class Evaluator:
    def __init__(self, datasets: DatasetManager, inference: InferenceService) -> None:
        self._datasets = datasets
        self._inference = inference

    async def evaluate(self, model_id: str, version: int, dataset_id: str) -> EvaluationReport:
        if not model_id or not dataset_id:
            raise InvalidArgument("model_id and dataset_id are required")
        if version < 0:
            raise InvalidArgument("version must be >= 0 (0 = latest READY version)")
        target = await self._inference.resolve(VersionRef(model_id, version))
        await self._check_modality(target, dataset_id)
        rows = await self._datasets.read_rows(dataset_id)
        report, _ = await self._run(target, rows, dataset_id)
        return report

    async def compare(self, first: VersionRef, others: list[VersionRef], dataset_id: str) -> ComparisonResult:
        """Evaluate `first` and each of `others` on the same rows; compare `first` with each (deltas, McNemar)."""
        if not others:
            raise InvalidArgument("compare is empty: name at least one model to compare with")
        if len(others) > MAX_COMPARED:
            raise InvalidArgument(f"{len(others)} models to compare, more than {MAX_COMPARED}; split the request")
        _check_refs(first, others, dataset_id)
        targets = [await self._inference.resolve(ref) for ref in [first, *others]]
        _check_distinct(targets)
        for target in targets:
            await self._check_modality(target, dataset_id)
        rows = await self._datasets.read_rows(dataset_id)
        runs = [await self._run(target, rows, dataset_id) for target in targets]
        (report, correct), kind = runs[0], targets[0].model.kind
        comparisons = [
            compare_pair(report, kind, correct, other, target.model.kind, other_correct)
            for (other, other_correct), target in zip(runs[1:], targets[1:], strict=True)
        ]
        return ComparisonResult(report, [other for other, _ in runs[1:]], comparisons)

    async def _run(
        self, target: Target, rows: list[Row], dataset_id: str
    ) -> tuple[EvaluationReport, list[bool]]:
        """The report of one version on the rows, and which rows it got right (for paired tests)."""
        started = time.perf_counter()
        inputs = [row.value for row in rows]
        probs = [await self._batch(target, inputs[i:i + _BATCH], dataset_id) for i in range(0, len(inputs), _BATCH)]
        predicted = np.concatenate(probs).argmax(axis=1)
        model_labels = target.model.labels
        y_pred = [model_labels[i] for i in predicted]
        y_true = [str(row.target) for row in rows]
        report = await asyncio.to_thread(_metrics, y_true, y_pred, model_labels)
        evaluation = EvaluationReport(
            model_id=target.model.id, model_version=target.version, dataset_id=dataset_id,
            duration_seconds=time.perf_counter() - started, **report,
        )
        return evaluation, [p == t for p, t in zip(y_pred, y_true, strict=True)]

    async def _batch(self, target: Target, values: list[str], dataset_id: str) -> np.ndarray:
        if target.model.modality != "image":
            return await self._inference.probabilities(target, values)
        images = await asyncio.to_thread(_read_images, self._datasets.dataset_dir(dataset_id), values)
        return await self._inference.probabilities(target, images)

    async def _check_modality(self, target: Target, dataset_id: str) -> None:
        dataset = await self._datasets.get(dataset_id)
        model = target.model
        if dataset.modality != model.modality:
            raise InvalidArgument(
                f"dataset {dataset.id!r} holds {dataset.modality} rows but model {model.id!r} (backbone "
                f"{model.backbone!r}) is for {model.modality} inputs; evaluate it on a dataset of {model.modality} rows"
            )


def _read_images(root: Path, relative_paths: list[str]) -> list[bytes]:
    return [(root / relative).read_bytes() for relative in relative_paths]


def _check_refs(first: VersionRef, others: list[VersionRef], dataset_id: str) -> None:
    if not first.model_id or not dataset_id:
        raise InvalidArgument("model_id and dataset_id are required")
    if first.version < 0:
        raise InvalidArgument("version must be >= 0 (0 = latest READY version)")
    for i, ref in enumerate(others):
        if not ref.model_id:
            raise InvalidArgument(f"compare[{i}].model_id is required")
        if ref.version < 0:
            raise InvalidArgument(f"compare[{i}].version must be >= 0 (0 = latest READY version)")


def _check_distinct(targets: list[Target]) -> None:
    seen: dict[tuple[str, int], int] = {}
    for i, target in enumerate(targets):
        key = (target.model.id, target.version)
        if key in seen:
            first = "model_id" if seen[key] == 0 else f"compare[{seen[key] - 1}]"
            raise InvalidArgument(
                f"compare[{i - 1}] is the same version as {first} ({key[0]} v{key[1]}); compare different versions"
            )
        seen[key] = i


def _metrics(y_true: list[str], y_pred: list[str], model_labels: list[str]) -> dict[str, Any]:
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
