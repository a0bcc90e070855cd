"""Hyperparameters chosen from the data (`auto`): the value of each field the caller leaves unset.

The rules, and why (docs/guides/fine-tuning.md repeats them for users):

- **batch_size**: 16 below 2,000 training rows, 32 from there. Small sets need more, noisier updates per epoch;
  large ones train faster per row with bigger batches at the same learning rate.
- **epochs**: enough passes for about `MIN_STEPS` optimizer steps, at least 3 and at most 10:
  `clamp(ceil(MIN_STEPS * batch_size / train_rows), 3, 10)`. A few hundred rows then get 8-10 epochs (fine-tuning
  small sets is unstable with too few updates: Mosbach et al., 2021) and early stopping ends the run when validation
  stops improving; large sets get 3.
- **validation_fraction**: 0.2 below 2,000 rows, else 0.1 but never fewer than 400 validation rows; and every class
  keeps at least 2 validation rows where it can (stratified split).
- **eval_steps**: once per epoch (0) while an epoch is at most 200 steps; past that, 4 evaluations per epoch, so early
  stopping and the best checkpoint see the run at a useful grain.
- **early_stopping_patience**: 3 evaluations when evaluating several times per epoch, else 2. Chosen this way (the
  caller left it unset), early stopping also acts on the fit diagnosis' advice during the run: training stops at the
  first evaluation where the validation loss has risen more than MAX_LOSS_RISE (20%) above its minimum while the
  train loss fell, and the metric for the best model has not improved since that minimum, rather than waiting out the
  patience (the best checkpoint so far is kept as always; `TrainingSpec.stop_on_overfit`,
  engines/training/auto_stop.py).
  JobResult.auto_actions says when it did. A patience the caller set is left alone: no such stop.
- **class_weighting**: on when the most frequent class has at least 1.5x the rows of the rarest (multi-label: always,
  as pos_weight), off for balanced data, where weights only add variance. Regression has none.
- **max_seq_length**: chosen by the worker from the data's token lengths (0 here means "from the data"): the 99th
  percentile of the training texts' token counts, rounded up to a multiple of 16, at least 32, at most what the
  backbone allows.
- **refit**: "true" (after early stopping has chosen the best step, retrain on train+validation for that many steps,
  scaled to the extra rows, and serve that model: engines/training/refit.py) when the training rows are fewer than
  `REFIT_MAX_TRAIN_ROWS`, else "false". Small sets lose the most to the validation split, and a refit costs about one
  more training run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tuneserve.engines.training.seq_length import AUTO_SEQ_LENGTH, seq_length_from

__all__ = [
    "AUTO_SEQ_LENGTH", "ORDER", "Chosen", "DataShape", "choose", "class_weighting", "seq_length_from",
    "validation_fraction",
]

MIN_STEPS = 300
MIN_EPOCHS, MAX_EPOCHS = 3, 10
LARGE = 2_000               # training rows from which batches are 32 and the validation fraction 0.1
MIN_VALIDATION_ROWS = 400
EPOCH_STEPS_FOR_SUB_EPOCH_EVAL = 200
IMBALANCE = 1.5
# Measured (bench/RESULTS.md, `python -m bench.defaults`): refit raised held-out macro F1 by 6.6 points at 240
# training rows, 2.3 at 360 and 0.3-1.3 at 800 (three seeds), and changed nothing at 1,600 (a 96% task); past that
# the extra validation rows are a smaller share of the data while the refit still costs about one more training run.
REFIT_MAX_TRAIN_ROWS = 1_000


@dataclass(frozen=True)
class DataShape:
    """What the rules read: the training dataset's size and label counts, and the validation set's size if given."""

    rows: int
    task: str = "classification"
    label_counts: dict[str, int] = field(default_factory=dict)
    validation_rows: int | None = None     # a separate validation dataset's rows; None = split from `rows`


@dataclass(frozen=True)
class Chosen:
    values: dict[str, Any]                 # the automatically chosen fields and their values
    fields: list[str]                      # their names, in ORDER


ORDER = ("epochs", "batch_size", "validation_fraction", "eval_steps", "early_stopping_patience", "class_weighting",
         "max_seq_length", "refit")


def choose(shape: DataShape, overrides: dict[str, Any]) -> Chosen:
    """Values for the rule-driven fields the caller left out of `overrides`; a rule that depends on another field
    (epochs on batch_size) reads the caller's value where there is one. refit "auto" asks for its rule, as leaving it
    unset does."""
    overrides = {name: value for name, value in overrides.items() if (name, value) != ("refit", "auto")}
    def pick(name: str, rule: Any) -> Any:
        return overrides.get(name, rule)

    fraction = pick("validation_fraction", validation_fraction(shape))
    train_rows = shape.rows if shape.validation_rows is not None else max(1, round(shape.rows * (1 - fraction)))
    batch = pick("batch_size", 16 if train_rows < LARGE else 32)
    accumulation = int(overrides.get("gradient_accumulation_steps", 1))
    steps_per_epoch = math.ceil(train_rows / (batch * accumulation))
    sub_epoch = steps_per_epoch > EPOCH_STEPS_FOR_SUB_EPOCH_EVAL
    rules: dict[str, Any] = {
        "epochs": min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(MIN_STEPS / steps_per_epoch))),
        "batch_size": batch,
        "validation_fraction": fraction,
        "eval_steps": steps_per_epoch // 4 if sub_epoch else 0,
        "early_stopping_patience": 3 if sub_epoch else 2,
        "class_weighting": class_weighting(shape),
        "max_seq_length": AUTO_SEQ_LENGTH,
        "refit": "true" if train_rows < REFIT_MAX_TRAIN_ROWS else "false",
    }
    if shape.validation_rows is not None:
        del rules["validation_fraction"]     # a validation dataset was given: no split
    if "max_steps" in overrides and overrides["max_steps"]:
        del rules["epochs"]                  # max_steps overrides epochs
    chosen = {name: value for name, value in rules.items() if name not in overrides}
    return Chosen(chosen, [name for name in ORDER if name in chosen])


def validation_fraction(shape: DataShape) -> float:
    fraction = 0.2 if shape.rows < LARGE else max(0.1, min(0.2, MIN_VALIDATION_ROWS / shape.rows))
    if shape.task == "classification" and shape.label_counts:
        # NOTE: a stratified split gives a class about fraction * count rows; ask for 2 of the rarest where that
        # stays within the validator's bound of 0.5.
        rarest = min(shape.label_counts.values())
        if rarest > 0:
            fraction = max(fraction, min(0.5, 2 / rarest))
    return round(fraction, 4)


def class_weighting(shape: DataShape) -> bool:
    if shape.task == "multi_label":
        return True
    counts = [c for c in shape.label_counts.values() if c > 0]
    if shape.task != "classification" or len(counts) < 2:
        return False
    return max(counts) >= IMBALANCE * min(counts)
