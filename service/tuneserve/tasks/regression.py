"""Regression: one number per row. The head predicts the target standardised by the training rows' mean and standard
deviation (stored with the model, undone when serving), trained with MSE or Huber; RMSE picks the best checkpoint by
default; the Wilcoxon signed-rank test on paired absolute errors compares two models."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from tuneserve.tasks.base import Decoded, OutputTensor, PairedTest, Source, Target, Task, TaskParams, TaskReport
from tuneserve.tasks.stats import signed_rank_leader, wilcoxon_p

if TYPE_CHECKING:
    import torch

MAX_POINTS = 500   # (true, predicted) pairs a report keeps for its scatter plot
REGRESSION_LOSSES = ("mse", "huber")
# A number as a CSV cell may write it: ASCII digits only (float() would also take "1_000", other scripts' digits, "nan")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_QUANTILES = {"p05": 5, "p25": 25, "median": 50, "p75": 75, "p95": 95}


class Regression(Task):
    name = "regression"
    target_field = "target"
    default_metric = "rmse"
    metrics_for_best = ("rmse", "mae", "spearman", "pearson", "r2", "loss")
    lower_is_better = frozenset({"loss", "rmse", "mae"})
    uses_labels = False
    guard_metric = "rmse"
    fit_metric = "r2"

    def num_outputs(self, labels: Sequence[str]) -> int:
        return 1

    def stored_target(self, value: Any) -> Target:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f'"target" must be a finite number, not {json.dumps(value)[:80]}')
        return float(value)

    def label_set(self, target: Target) -> list[str]:
        return []

    def read_target(self, value: Any, column: str, separator: str | None, check_label: Callable[[str], str]) -> Target:
        """A finite float: a JSON number, or a CSV cell holding a decimal number (1, -2.5, 3e-4)."""
        if separator is not None:
            text = str(value).strip()
            if not _NUMBER.fullmatch(text):
                shown = text if len(text) <= 40 else text[:40] + "..."
                raise ValueError(f"field {column!r} is {shown!r}, not a finite number")
            number = float(text)
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            kind = "a string" if isinstance(value, str) else type(value).__name__
            raise ValueError(f"field {column!r} must be a number, not {kind}")
        else:
            try:
                number = float(value)
            except OverflowError:
                raise ValueError(f"field {column!r} is a number too large for a float") from None
        if not math.isfinite(number):
            raise ValueError(f"field {column!r} is {number}, not a finite number")
        return number

    def stat_value(self, target: Target) -> float | None:
        return float(target)

    def dataset_stats(self, values: np.ndarray) -> dict[str, Any]:
        """{"target": {min, max, mean, std (population), p05, p25, median, p75, p95}} (linear interpolation)."""
        targets = np.asarray(values, dtype=np.float64)
        if not targets.size:
            return {"target": {}}
        summary = {"min": float(targets.min()), "max": float(targets.max()), "mean": float(targets.mean()),
                   "std": float(targets.std())}
        quantiles = np.percentile(targets, list(_QUANTILES.values()))
        summary.update({name: float(q) for name, q in zip(_QUANTILES, quantiles, strict=True)})
        return {"target": summary}

    def prepare(self, targets: Sequence[Target], params: TaskParams) -> TaskParams:
        values = np.asarray(targets, dtype=np.float64)
        std = float(values.std())
        return TaskParams(**{**params.__dict__, "target_mean": float(values.mean()), "target_std": std if std > 0 else 1.0})

    def encode_targets(self, targets: Sequence[Target], labels: Sequence[str], params: TaskParams) -> np.ndarray:
        values = np.asarray(targets, dtype=np.float64)
        return ((values - params.target_mean) / params.target_std).astype(np.float32)

    def decode_targets(self, encoded: np.ndarray, labels: Sequence[str], params: TaskParams) -> list[Target]:
        return [float(v) for v in np.asarray(encoded, dtype=np.float64).reshape(-1) * params.target_std + params.target_mean]

    def loss(
        self, logits: torch.Tensor, targets: torch.Tensor, *, weights: torch.Tensor | None, options: dict[str, Any]
    ) -> torch.Tensor:
        from torch.nn import functional

        predicted, wanted = logits.float().reshape(-1), targets.float().reshape(-1)
        if options.get("regression_loss", "mse") == "huber":
            return functional.huber_loss(predicted, wanted, delta=1.0)
        return functional.mse_loss(predicted, wanted)

    def outputs(self, logits: np.ndarray, params: TaskParams) -> np.ndarray:
        return (logits[:, :1].astype(np.float64) * params.target_std + params.target_mean).astype(np.float32)

    def decode(
        self, scores: np.ndarray, labels: Sequence[str], params: TaskParams, top_k: int, source: Source | None = None
    ) -> Decoded:
        return Decoded(value=float(scores[0]))

    def output_names(self) -> list[tuple[str, str, int]]:
        return [("value", "FP32", 1)]

    def open_inference(
        self, scores: np.ndarray, labels: Sequence[str], params: TaskParams, sources: Sequence[Source | None] = (),
    ) -> list[OutputTensor]:
        return [OutputTensor("value", "FP32", [len(scores), 1], scores[:, :1].astype(np.float32))]

    def report(self, scores: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams) -> TaskReport:
        truth = np.asarray(targets, dtype=np.float64)
        predicted = scores[:, 0].astype(np.float64) if len(scores) else np.zeros(0)
        residual = predicted - truth
        absolute = np.abs(residual)
        n = len(truth)
        total = float(np.sum((truth - truth.mean()) ** 2)) if n else 0.0
        metrics = {
            "rmse": float(np.sqrt(np.mean(residual**2))) if n else 0.0,
            "mae": float(np.mean(absolute)) if n else 0.0,
            "r2": 1.0 - float(np.sum(residual**2)) / total if total > 0 else 0.0,
            "pearson": _correlation(stats.pearsonr, truth, predicted),
            "spearman": _correlation(stats.spearmanr, truth, predicted),
        }
        sample = np.unique(np.linspace(0, n - 1, min(n, MAX_POINTS)).astype(int)) if n else np.zeros(0, dtype=int)
        return TaskReport(
            metrics=metrics,
            residuals={
                "mean": float(residual.mean()) if n else 0.0, "std": float(residual.std()) if n else 0.0,
                "median_abs": float(np.median(absolute)) if n else 0.0,
                "p90_abs": float(np.quantile(absolute, 0.9)) if n else 0.0,
                "max_abs": float(absolute.max()) if n else 0.0,
            },
            points=[(float(truth[i]), float(predicted[i])) for i in sample],
        )

    def outcomes(
        self, scores: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams,
        universe: Sequence[str],
    ) -> np.ndarray:
        return np.abs(scores[:, 0].astype(np.float64) - np.asarray(targets, dtype=np.float64))

    def paired_test(self, first: np.ndarray, second: np.ndarray) -> PairedTest:
        return PairedTest(
            "wilcoxon", wilcoxon_p(first, second), int(np.sum(first < second)), int(np.sum(second < first)),
            signed_rank_leader(first, second),
        )


def _correlation(method: Any, truth: np.ndarray, predicted: np.ndarray) -> float:
    """A correlation coefficient, 0 where it is undefined (fewer than 2 rows, or a constant side)."""
    if len(truth) < 2 or np.ptp(truth) == 0 or np.ptp(predicted) == 0:
        return 0.0
    return float(method(truth, predicted)[0])
