"""The report's pictures, drawn with matplotlib's object API (no pyplot, no global figure state); `html` embeds them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tuneserve_client.proto.tuneserve.v1.common_pb2 import TASK_MULTI_LABEL, TASK_REGRESSION
from tuneserve_client.proto.tuneserve.v1.models_pb2 import (
    ClassMetrics,
    ConfusionMatrix,
    RegressionPoint,
    ReliabilityBin,
)
from tuneserve_client.proto.tuneserve.v1.training_pb2 import Job

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The validation metrics a learning curve draws, by the job's task (Task enum value; classification by default).
_CLASSIFICATION = ("macro_f1", "accuracy")
CURVE_METRICS = {TASK_MULTI_LABEL: ("micro_f1", "macro_f1"), TASK_REGRESSION: ("r2", "pearson", "spearman")}
LABEL_CHARS = 24  # class names on a picture's axes are cut to this; the tables beside them show them whole
_MAX_WIDTH = 24  # inches: many classes make narrower bars, not an endless picture
_ANNOTATED_CLASSES = 30  # beyond this, confusion-matrix cells are too small for their counts (the table has them)


def short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _figure(width: float, height: float, columns: int = 1) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots(1, columns)


def learning_curve(job: Job) -> Figure:
    curve, best = job.result.learning_curve, job.result.best_step
    steps = [p.step for p in curve]
    figure, (losses, metrics) = _figure(11, 3.6, 2)
    losses.plot(steps, [p.train_loss for p in curve], marker="o", label="train loss")
    losses.plot(steps, [p.validation_loss for p in curve], marker="o", label="validation loss")
    losses.set(xlabel="step", ylabel="loss", title="loss")
    names = sorted({name for p in curve for name in p.metrics} & set(CURVE_METRICS.get(job.task, _CLASSIFICATION)))
    for name in names:
        metrics.plot(steps, [p.metrics.get(name, float("nan")) for p in curve], marker="o", label=f"validation {name}")
    metrics.set(xlabel="step", ylabel="metric", title="validation metrics")
    _unit_range(metrics, [p.metrics[name] for p in curve for name in names if name in p.metrics], 1.02)
    for axes in (losses, metrics):
        if best:
            axes.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"best checkpoint (step {best})")
        axes.legend(fontsize="small")
        axes.grid(alpha=0.3)
    return figure


def confusion(matrix: ConfusionMatrix, title: str) -> Figure:
    labels = [short(label) for label in matrix.labels]
    counts = [list(row.counts) for row in matrix.rows]
    size = min(3 + 0.5 * len(labels), 12)
    figure, axes = _figure(size + 1, size)
    image = axes.imshow(counts, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=axes, shrink=0.8)
    ticks = list(range(len(labels)))
    axes.set_xticks(ticks, labels, rotation=45, ha="right")
    axes.set_yticks(ticks, labels)
    axes.set(xlabel="predicted label", ylabel="true label", title=title)
    highest = max((max(row, default=0) for row in counts), default=0)
    for i, row in enumerate(counts if len(labels) <= _ANNOTATED_CLASSES else []):
        for j, count in enumerate(row):
            axes.text(j, i, str(count), ha="center", va="center", color="white" if count > highest / 2 else "black")
    return figure


def per_class(per_class: Sequence[ClassMetrics], title: str) -> Figure:
    figure, axes = _figure(min(max(6, 1.2 * len(per_class)), _MAX_WIDTH), 3.6)
    width = 0.27
    positions = range(len(per_class))
    for offset, name in zip((-width, 0.0, width), ("precision", "recall", "f1"), strict=True):
        axes.bar([x + offset for x in positions], [getattr(c, name) for c in per_class], width, label=name)
    axes.set_xticks(list(positions), [short(c.label) for c in per_class], rotation=30, ha="right")
    axes.set(ylim=(0, 1.05), ylabel="score", title=title)
    axes.legend(fontsize="small")
    return figure


def bars(names: Sequence[str], series: Mapping[str, Sequence[float]], title: str) -> Figure:
    figure, axes = _figure(min(max(6, 2 * len(names)), _MAX_WIDTH), 3.6)
    width = 0.8 / max(len(series), 1)
    for k, (metric, values) in enumerate(series.items()):
        positions = [x + (k - (len(series) - 1) / 2) * width for x in range(len(names))]
        bars = axes.bar(positions, values, width, label=metric)
        axes.bar_label(bars, fmt="%.3f", fontsize="small")
    axes.set_xticks(list(range(len(names))), [short(n) for n in names])
    axes.set(ylabel="score", title=title)
    _unit_range(axes, [v for values in series.values() for v in values], 1.1)
    axes.legend(fontsize="small")
    return figure


def thresholds(labels: Sequence[str], values: Sequence[float], title: str) -> Figure:
    """A multi-label model's decision threshold per label, against the default 0.5."""
    figure, axes = _figure(min(max(6, 0.6 * len(labels)), _MAX_WIDTH), 3.6)
    bars = axes.bar(range(len(labels)), values, 0.6, label="tuned threshold")
    axes.bar_label(bars, fmt="%.2f", fontsize="small")
    axes.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="default 0.5")
    axes.set_xticks(list(range(len(labels))), [short(label) for label in labels], rotation=30, ha="right")
    axes.set(ylim=(0, 1.05), ylabel="threshold", title=title)
    axes.legend(fontsize="small")
    return figure


def scatter(points: Sequence[RegressionPoint], title: str) -> Figure:
    """Predicted against true values, with the line a perfect model would sit on."""
    figure, axes = _figure(5.5, 5)
    truth, predicted = [p.true_value for p in points], [p.predicted for p in points]
    axes.scatter(truth, predicted, s=12, alpha=0.6)
    low, high = min(truth + predicted, default=0.0), max(truth + predicted, default=1.0)
    axes.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="predicted = true")
    axes.set(xlabel="true value", ylabel="predicted value", title=title)
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    return figure


def residuals(points: Sequence[RegressionPoint], title: str) -> Figure:
    """The distribution of residuals (predicted - true)."""
    figure, axes = _figure(6, 3.6)
    axes.hist([p.predicted - p.true_value for p in points], bins=min(30, max(5, len(points) // 5)))
    axes.axvline(0.0, color="grey", linestyle="--", linewidth=1)
    axes.set(xlabel="residual (predicted - true)", ylabel="rows", title=title)
    return figure


def reliability(bins: Sequence[ReliabilityBin], title: str) -> Figure:
    """Accuracy against mean confidence per bin (a marker's area: its rows), with the line of perfect calibration and
    each bin's consistency band (the 5-95% range of accuracies a perfectly calibrated model would show with its rows:
    a marker outside its band is off by more than sampling explains)."""
    figure, axes = _figure(5.5, 5)
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    banded = [b for b in bins if b.calibrated_high > 0]
    if banded:
        axes.vlines([b.confidence for b in banded], [b.calibrated_low for b in banded],
                    [b.calibrated_high for b in banded], color="grey", linewidth=3, alpha=0.35,
                    label="5-95% if calibrated")
    total = max(1, sum(b.count for b in bins))
    axes.plot([b.confidence for b in bins], [b.accuracy for b in bins], color="C0", linewidth=1)
    axes.scatter([b.confidence for b in bins], [b.accuracy for b in bins], s=[20 + 400 * b.count / total for b in bins],
                 alpha=0.7, label="bins (area: rows)")
    axes.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="mean score in bin", ylabel="share right", title=title)
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    return figure


def _unit_range(axes: Any, values: Sequence[float], top: float) -> None:
    """Scores from 0 to 1 on a fixed 0..`top` axis, so pictures compare; anything else (RMSE, a negative R²) on
    matplotlib's own range."""
    if all(0.0 <= v <= 1.0 for v in values):
        axes.set(ylim=(0, top))
