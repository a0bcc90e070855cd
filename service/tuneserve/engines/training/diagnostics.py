"""Fit diagnostics: whether a run under-fits, over-fits or fits well, with the rule and the numbers that decided it.

The rule, applied in this order to the best checkpoint (the one that is kept and served):
1. underfitting  if its macro F1 on (a sample of) the training rows is below UNDERFIT_TRAIN_F1: it has not even
                 learnt the data it was trained on (more epochs, a higher learning rate or more trainable layers);
2. overfitting   if train macro F1 - validation macro F1 exceeds MAX_GAP;
3. overfitting   if the last validation loss rose more than MAX_LOSS_RISE above its minimum while the train loss fell
                 over the same evaluations (the run went on memorising after its best point);
4. good_fit      otherwise.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from tuneserve.engines.training.callbacks import CurvePoint
from tuneserve.engines.training.data import E

if TYPE_CHECKING:
    from torch.utils.data import Dataset
    from transformers import Trainer

# NOTE: train-set macro F1 needs no more rows than a validation set to be as precise; 512 rows keep it to seconds.
TRAIN_SAMPLE_ROWS = 512
UNDERFIT_TRAIN_F1 = 0.70
MAX_GAP = 0.10
MAX_LOSS_RISE = 0.20


@dataclass(frozen=True)
class FitDiagnosis:
    verdict: str                  # good_fit | overfitting | underfitting
    rule: str                     # the rule that produced it, with the numbers
    train_validation_gap: float   # train macro F1 - validation macro F1 at the best checkpoint

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def train_sample(examples: list[E], seed: int, rows: int = TRAIN_SAMPLE_ROWS) -> list[E]:
    """A seeded random sample of the training rows (all of them when there are fewer)."""
    if len(examples) <= rows:
        return list(examples)
    return random.Random(seed).sample(examples, rows)


def diagnose(train_f1: float, validation_f1: float, curve: list[CurvePoint], sample_rows: int) -> FitDiagnosis:
    gap = train_f1 - validation_f1
    measured = (
        f"train macro F1 {train_f1:.4f} (best checkpoint, {sample_rows} training rows) vs validation "
        f"{validation_f1:.4f}, gap {gap:+.4f}"
    )
    if train_f1 < UNDERFIT_TRAIN_F1:
        return FitDiagnosis("underfitting", f"{measured}: train macro F1 < {UNDERFIT_TRAIN_F1}", gap)
    if gap > MAX_GAP:
        return FitDiagnosis("overfitting", f"{measured}: gap > {MAX_GAP}", gap)
    rise = _loss_rise(curve)
    if rise is not None:
        return FitDiagnosis("overfitting", f"{measured}; but {rise}", gap)
    return FitDiagnosis(
        "good_fit",
        f"{measured}: train macro F1 >= {UNDERFIT_TRAIN_F1}, gap <= {MAX_GAP}, and the validation loss did not rise "
        f"more than {MAX_LOSS_RISE:.0%} above its minimum while the train loss fell",
        gap,
    )


def _loss_rise(curve: list[CurvePoint]) -> str | None:
    """Describe a validation-loss rise of more than MAX_LOSS_RISE over its minimum while the train loss fell."""
    if len(curve) < 2:
        return None
    lowest = min(curve, key=lambda point: point.validation_loss)
    last = curve[-1]
    rose = last.validation_loss > lowest.validation_loss * (1 + MAX_LOSS_RISE)
    if not rose or not last.train_loss < lowest.train_loss:
        return None
    return (
        f"validation loss rose from {lowest.validation_loss:.4f} (step {lowest.step}) to {last.validation_loss:.4f} "
        f"(step {last.step}, +{last.validation_loss / lowest.validation_loss - 1:.0%} > {MAX_LOSS_RISE:.0%}) while "
        f"train loss fell from {lowest.train_loss:.4f} to {last.train_loss:.4f}"
    )


def validation_figures(
    trainer: Trainer, validation_set: Dataset[Any], labels: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The loaded (best) checkpoint's confusion matrix and per-class metrics on the validation rows, shaped as
    tuneserve.v1.ConfusionMatrix and ClassMetrics (JobResult.validation_confusion_matrix / validation_per_class)."""
    output = trainer.predict(validation_set, metric_key_prefix="figures")
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    predicted, truth = np.argmax(logits, axis=-1), np.asarray(output.label_ids)
    classes = list(range(len(labels)))
    counts = confusion_matrix(truth, predicted, labels=classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=classes, average=None, zero_division=0
    )
    matrix = {"labels": list(labels), "rows": [{"counts": [int(c) for c in row]} for row in counts]}
    per_class = [
        {"label": label, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
        for label, p, r, f, n in zip(labels, precision, recall, f1, support, strict=True)
    ]
    return matrix, per_class
