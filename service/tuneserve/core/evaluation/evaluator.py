"""Evaluate: run a model version's served ONNX graph over a dataset and report its task's metrics
(`tuneserve.tasks`: Task.report); `compare` runs several versions over the same rows and tests their paired outcomes
with the task's test (`tuneserve.core.evaluation.comparison`). The dataset must be the model's kind: its modality, its
task and its input shape (single texts or text pairs). An image model reads its images' bytes from the dataset
directory, a batch at a time; a pair model reads (text, text_pair) tuples."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuneserve.core.data.datasets import DatasetManager, Row
from tuneserve.core.evaluation.comparison import Comparison, compare
from tuneserve.core.evaluation.reports import EvaluationReport
from tuneserve.core.serving.batching import stack_rows
from tuneserve.core.serving.inference import InferenceService, Served
from tuneserve.core.serving.requests import Inputs
from tuneserve.core.serving.resolver import Target, VersionRef
from tuneserve.errors import InvalidArgument
from tuneserve.tasks import get_task
from tuneserve.types import DatasetRecord

_BATCH = 64
# NOTE: each compared model is a full pass over the dataset; a handful answers "did transfer help" within a deadline.
MAX_COMPARED = 8

@dataclass(frozen=True)
class ComparisonResult:
    report: EvaluationReport
    compared: list[EvaluationReport]      # one per compared model, in request order
    comparisons: list[Comparison]         # report vs each compared model, in request order


@dataclass(frozen=True)
class _Run:
    report: EvaluationReport
    outcomes: np.ndarray                  # per row, what the task's paired test compares (Task.outcomes)


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
        dataset = await self._check_dataset(target, dataset_id)
        rows = await self._datasets.read_rows(dataset_id)
        return (await self._run(target, rows, dataset, _universe(dataset, [target]))).report

    async def compare(self, first: VersionRef, others: list[VersionRef], dataset_id: str) -> ComparisonResult:
        """Evaluate `first` and each of `others` on the same rows; compare `first` with each (deltas, paired test)."""
        if not others:
            raise InvalidArgument("compare is empty: name at least one model to compare with")
        if len(others) > MAX_COMPARED:
            raise InvalidArgument(f"{len(others)} models to compare, more than {MAX_COMPARED}; split the request")
        _check_refs(first, others, dataset_id)
        targets = [await self._inference.resolve(ref) for ref in [first, *others]]
        _check_distinct(targets)
        dataset = [await self._check_dataset(target, dataset_id) for target in targets][0]
        rows = await self._datasets.read_rows(dataset_id)
        universe = _universe(dataset, targets)
        runs = [await self._run(target, rows, dataset, universe) for target in targets]
        task, kind = get_task(targets[0].model.task), targets[0].model.kind
        comparisons = [
            compare(runs[0].report, kind, run.report, target.model.kind, task.paired_test(runs[0].outcomes, run.outcomes))
            for run, target in zip(runs[1:], targets[1:], strict=True)
        ]
        return ComparisonResult(runs[0].report, [run.report for run in runs[1:]], comparisons)

    async def _run(self, target: Target, rows: list[Row], dataset: DatasetRecord, universe: list[str]) -> _Run:
        """The report of one version on the rows, and its per-row outcomes (for paired tests)."""
        started = time.perf_counter()
        model = target.model
        inputs = _inputs(rows, model.text_pairs)
        batches = [await self._batch(target, inputs[i:i + _BATCH], dataset.id) for i in range(0, len(inputs), _BATCH)]
        # NOTE: read as the version that served them reads them: its runtime's task, parameters and label columns
        task, params, labels = batches[0].task, batches[0].params, batches[0].labels
        scores = stack_rows([row for batch in batches for row in batch.scores])
        targets = [row.target for row in rows]
        figures = await asyncio.to_thread(task.report, scores, targets, labels, params)
        outcomes = task.outcomes(scores, targets, labels, params, universe)
        report = EvaluationReport.of(
            task.name, figures, model_id=model.id, model_version=target.version, dataset_id=dataset.id,
            num_examples=len(rows), duration_seconds=time.perf_counter() - started,
        )
        return _Run(report, outcomes)

    async def _batch(self, target: Target, values: Inputs, dataset_id: str) -> Served:
        """The served scores of a batch (Task.outputs: probabilities, or values in the target's units)."""
        if target.model.modality != "image":
            return await self._inference.infer(target, values)
        paths = [str(value) for value in values]
        images = await asyncio.to_thread(_read_images, self._datasets.dataset_dir(dataset_id), paths)
        return await self._inference.infer(target, images)

    async def _check_dataset(self, target: Target, dataset_id: str) -> DatasetRecord:
        """The dataset, when it is of the model's modality, task and input shape; InvalidArgument naming both."""
        dataset = await self._datasets.get(dataset_id)
        model = target.model
        if dataset.modality != model.modality:
            raise InvalidArgument(
                f"dataset {dataset.id!r} holds {dataset.modality} rows but model {model.id!r} (backbone "
                f"{model.backbone!r}) is for {model.modality} inputs; evaluate it on a dataset of {model.modality} rows"
            )
        if dataset.task != model.task:
            raise InvalidArgument(
                f"dataset {dataset.id!r} is a {dataset.task} dataset but model {model.id!r} was trained for "
                f"{model.task}; evaluate it on a dataset of {model.task} rows"
            )
        if dataset.text_pairs != model.text_pairs:
            raise InvalidArgument(
                f"dataset {dataset.id!r} holds {_shape(dataset.text_pairs)} but model {model.id!r} takes "
                f"{_shape(model.text_pairs)}; evaluate it on a dataset of {_shape(model.text_pairs)}"
            )
        return dataset


def _inputs(rows: list[Row], text_pairs: bool) -> Inputs:
    if rows and rows[0].tokens is not None:   # token classification: the stored words, already split
        return [row.tokens or [] for row in rows]
    if text_pairs:
        return [(row.value, row.text_pair) for row in rows]
    return [row.value for row in rows]


def _shape(text_pairs: bool) -> str:
    return "text pairs (text and text_pair)" if text_pairs else "single texts"


def _universe(dataset: DatasetRecord, targets: Sequence[Target]) -> list[str]:
    """The labels a per-label paired test runs over: the dataset's and every compared model's."""
    return sorted({*dataset.labels, *(label for target in targets for label in target.model.labels)})


def _read_images(root: Path, relative_paths: Sequence[str]) -> list[bytes]:
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
