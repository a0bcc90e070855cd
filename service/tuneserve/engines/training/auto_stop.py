"""FineTune's `auto` acting on the fit diagnosis' advice during the run: when it chose early stopping itself (the caller
left early_stopping_patience unset: `TrainingSpec.stop_on_overfit`), training stops at the first evaluation that
shows overfitting instead of waiting out the patience.

The rule, at each evaluation, on the learning curve so far: the validation loss has risen more than the diagnostics'
MAX_LOSS_RISE above its minimum while the train loss fell (the diagnosis' rule 3, `diagnostics.loss_rise_minimum`),
and the metric for the best model has not improved since that minimum. The best checkpoint so far is kept as always
(load_best_model_at_end); the run gives up the evaluations the patience would have spent (where the metric might
still have recovered while the loss climbed: the caller who sets a patience keeps them).
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from tuneserve.engines.training.callbacks import CurvePoint, EventReporter
from tuneserve.engines.training.diagnostics import describe_loss_rise, loss_rise_minimum
from tuneserve.engines.training.spec import TrainingSpec
from tuneserve.tasks import get_task


class OverfitStop(TrainerCallback):
    """Stops training when the rule above holds before early stopping's patience runs out; the reporter's early-stop
    event and the job result (JobResult.auto_actions) then say why. Every rank reads the same curve (evaluation
    metrics and logged train losses are gathered across ranks), so under DDP they all stop at the same step."""

    def __init__(self, reporter: EventReporter, *, metric: str, greater_is_better: bool, patience: int) -> None:
        """`reporter` must come before this callback in the Trainer's list: it records each evaluation first."""
        self._reporter = reporter
        self._metric = metric
        self._greater_is_better = greater_is_better
        self._patience = patience

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        curve = self._reporter.learning_curve
        lowest = loss_rise_minimum(curve)
        if lowest is None:
            return
        best = self._best(curve)
        # NOTE: an improvement after the loss minimum means the run is still learning what the metric measures; an
        # evaluation where the patience runs out too is early stopping's own, not this rule's
        if best.step > lowest.step or curve.index(best) + self._patience <= len(curve) - 1:
            return
        control.should_training_stop = True
        self._reporter.auto_stopped(
            f"stopped at step {state.global_step} of {state.max_steps} (epoch {float(state.epoch or 0):.1f}) at the "
            f"first sign of overfitting, before early stopping's patience ran out: "
            f"{describe_loss_rise(lowest, curve[-1])}, and {self._metric} has not improved since step {best.step} "
            "(the best checkpoint, which is kept)"
        )

    def _best(self, curve: list[CurvePoint]) -> CurvePoint:
        """The evaluation the Trainer keeps as the best checkpoint: the first of the best metric values."""
        def value(point: CurvePoint) -> float:
            metric = point.validation_loss if self._metric == "loss" else point.metrics[self._metric]
            return metric if self._greater_is_better else -metric

        return max(curve, key=value)  # NOTE: max returns the first of equal values, as the Trainer keeps the first


def auto_callbacks(spec: TrainingSpec, reporter: EventReporter) -> list[TrainerCallback]:
    """The rules auto applies during the spec's run: OverfitStop when early stopping was chosen automatically (and is
    on); none when the caller set the patience, whose setting wins."""
    hp, metric = spec.hyperparameters, spec.best_metric()
    if not spec.stop_on_overfit or hp.early_stopping_patience <= 0:
        return []
    greater_is_better = get_task(spec.task).greater_is_better(metric)
    return [OverfitStop(reporter, metric=metric, greater_is_better=greater_is_better,
                        patience=hp.early_stopping_patience)]
