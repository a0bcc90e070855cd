"""Fit diagnostics: whether a run under-fits, over-fits or fits well, with the rule and the numbers that decided it.

The metric is the task's `fit_metric` (higher is better, at most 1: macro F1 for classification, micro F1 for
multi-label at the tuned thresholds, R² for regression). The rule, applied in this order to the best checkpoint (the
one that is kept and served):
1. underfitting  if its metric on (a sample of) the training rows is below UNDERFIT_TRAIN_SCORE: it has not even
                 learnt the data it was trained on (more epochs, a higher learning rate or more trainable layers);
2. overfitting   if train metric - validation metric exceeds MAX_GAP;
3. overfitting   if the last validation loss rose more than MAX_LOSS_RISE above its minimum while the train loss fell
                 over the same evaluations (the run went on memorising after its best point);
4. good_fit      otherwise.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

from tuneserve.engines.training.callbacks import CurvePoint
from tuneserve.engines.training.data import E
from tuneserve.tasks import TaskReport

# NOTE: a train-set metric needs no more rows than a validation set to be as precise; 512 rows keep it to seconds.
TRAIN_SAMPLE_ROWS = 512
UNDERFIT_TRAIN_SCORE = 0.70
MAX_GAP = 0.10
MAX_LOSS_RISE = 0.20


@dataclass(frozen=True)
class FitDiagnosis:
    verdict: str                  # good_fit | overfitting | underfitting
    rule: str                     # the rule that produced it, with the numbers
    train_validation_gap: float   # train metric - validation metric (the task's fit_metric) at the best checkpoint
    advice: str = ""              # what to try next, in plain words tied to the numbers

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def train_sample(examples: list[E], seed: int, rows: int = TRAIN_SAMPLE_ROWS) -> list[E]:
    """A seeded random sample of the training rows (all of them when there are fewer)."""
    if len(examples) <= rows:
        return list(examples)
    return random.Random(seed).sample(examples, rows)


def diagnose(
    train_score: float, validation_score: float, curve: list[CurvePoint], sample_rows: int, *, metric: str = "macro_f1"
) -> FitDiagnosis:
    """`metric` (the task's fit_metric) names the scores in the rule's sentence."""
    gap = train_score - validation_score
    name = _NAMES.get(metric, metric)
    measured = (
        f"train {name} {train_score:.4f} (best checkpoint, {sample_rows} training rows) vs validation "
        f"{validation_score:.4f}, gap {gap:+.4f}"
    )
    if train_score < UNDERFIT_TRAIN_SCORE:
        return FitDiagnosis("underfitting", f"{measured}: train {name} < {UNDERFIT_TRAIN_SCORE}", gap,
                            _underfit_advice(name, train_score, curve))
    if gap > MAX_GAP:
        return FitDiagnosis("overfitting", f"{measured}: gap > {MAX_GAP}", gap, _overfit_advice(name, gap, curve))
    lowest = loss_rise_minimum(curve)
    if lowest is not None:
        rise = describe_loss_rise(lowest, curve[-1])
        return FitDiagnosis("overfitting", f"{measured}; but {rise}", gap, _overfit_advice(name, gap, curve))
    return FitDiagnosis(
        "good_fit",
        f"{measured}: train {name} >= {UNDERFIT_TRAIN_SCORE}, gap <= {MAX_GAP}, and the validation loss did not rise "
        f"more than {MAX_LOSS_RISE:.0%} above its minimum while the train loss fell",
        gap,
        "nothing to fix in the fit; more labelled rows, or a search over the hyperparameters (finetune --search), are "
        "what can still raise the validation score",
    )


def _underfit_advice(name: str, train_score: float, curve: list[CurvePoint]) -> str:
    """Underfitting: the model has not learnt its own training rows: train longer, faster, or with more of it free."""
    rising = len(curve) >= 2 and curve[-1].validation_loss < min(point.validation_loss for point in curve[:-1])
    longer = (
        "train more epochs (the validation loss was still falling at the last evaluation)" if rising
        else "train more epochs"
    )
    return (
        f"the model reached only {train_score:.2f} train {name} (below {UNDERFIT_TRAIN_SCORE}) on rows it trained on: "
        f"{longer}, raise learning_rate (e.g. 2x) and head_learning_rate, or unfreeze more of the backbone "
        "(freeze=none, or a larger trainable_layers)"
    )


def _overfit_advice(name: str, gap: float, curve: list[CurvePoint]) -> str:
    """Overfitting: the model learns its training rows better than it generalises: less capacity, less time, more
    data."""
    best = max(curve, key=lambda point: -point.validation_loss) if curve else None
    earlier = (
        f"fewer epochs (the validation loss was lowest at epoch {best.epoch:.1f}, step {best.step})" if best
        else "fewer epochs"
    )
    return (
        f"train {name} is {gap:+.2f} above validation: freeze more of the backbone (freeze=top_k with a small "
        f"trainable_layers, or freeze=all), raise head_dropout (e.g. 0.3) or weight_decay, train {earlier}, or add "
        "more labelled rows"
    )


def loss_rise_minimum(curve: list[CurvePoint]) -> CurvePoint | None:
    """Rule 3 on the curve so far: the evaluation of lowest validation loss when the last one rose more than
    MAX_LOSS_RISE above it while the train loss fell; None when the curve shows no such rise."""
    if len(curve) < 2:
        return None
    lowest = min(curve, key=lambda point: point.validation_loss)
    last = curve[-1]
    rose = last.validation_loss > lowest.validation_loss * (1 + MAX_LOSS_RISE)
    return lowest if rose and last.train_loss < lowest.train_loss else None


def describe_loss_rise(lowest: CurvePoint, last: CurvePoint) -> str:
    """Rule 3's numbers: from the lowest validation loss to the last, and the train loss over the same stretch."""
    return (
        f"validation loss rose from {lowest.validation_loss:.4f} (step {lowest.step}) to {last.validation_loss:.4f} "
        f"(step {last.step}, +{last.validation_loss / lowest.validation_loss - 1:.0%} > {MAX_LOSS_RISE:.0%}) while "
        f"train loss fell from {lowest.train_loss:.4f} to {last.train_loss:.4f}"
    )


def validation_figures(report: TaskReport, labels: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The best checkpoint's confusion matrix (single-label only) and per-class or per-label metrics (none for
    regression) on the validation rows, shaped as tuneserve.v1.ConfusionMatrix and ClassMetrics
    (JobResult.validation_confusion_matrix / validation_per_class)."""
    matrix: dict[str, Any] = {}
    if report.confusion_labels:
        matrix = {
            "labels": list(report.confusion_labels),
            "rows": [{"counts": [int(c) for c in row]} for row in report.confusion],
        }
    known = set(labels)
    per_class = [
        {"label": row.label, "precision": row.precision, "recall": row.recall, "f1": row.f1, "support": row.support}
        for row in report.per_label
        if row.label in known
    ]
    return matrix, per_class


_NAMES = {"macro_f1": "macro F1", "micro_f1": "micro F1", "r2": "R²"}
