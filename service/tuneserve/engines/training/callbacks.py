"""Trainer callbacks: progress, evaluation, checkpoint and early-stop events, and cancellation.

The Trainer calls its callbacks in order: `DefaultFlowCallback` first sets the flags to log, evaluate and save, then
these callbacks may read and override them (a cancel clears the evaluate/save flags so that stopping takes seconds).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from tuneserve.engines.training.events import (
    CheckpointEvent,
    EarlyStoppedEvent,
    EvaluationEvent,
    EventWriter,
    ProgressEvent,
)

METRIC_NAMES = ("accuracy", "macro_f1", "macro_precision", "macro_recall", "weighted_f1")


@dataclass(frozen=True)
class CurvePoint:
    """One evaluation of the learning curve, with the mean train loss of the logging windows since the previous
    evaluation (the same stretch of training the validation figures follow)."""

    step: int
    epoch: float
    train_loss: float
    validation_loss: float
    metrics: dict[str, float] = field(default_factory=dict)


class EventReporter(TrainerCallback):
    """Turns the Trainer's logs, evaluations and saves into worker events, and keeps the learning curve."""

    def __init__(
        self, writer: EventWriter, cancel: threading.Event, *, metric_name: str, early_stopping_patience: int
    ) -> None:
        self._writer = writer
        self._cancel = cancel
        self._metric_name = metric_name
        self._patience = early_stopping_patience
        self._started = 0.0
        self._last_log = (0, 0.0)
        self.last_train_loss = float("nan")
        self.learning_curve: list[CurvePoint] = []
        self._window_losses: list[float] = []

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._started = time.monotonic()
        self._last_log = (state.global_step, self._started)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        # NOTE: the Trainer also logs evaluation metrics and an end-of-training summary here; only step logs
        # carry both "loss" and "learning_rate".
        if not logs or "loss" not in logs or "learning_rate" not in logs:
            return
        now = time.monotonic()
        step = state.global_step
        last_step, last_time = self._last_log
        self._last_log = (step, now)
        self.last_train_loss = float(logs["loss"])
        self._window_losses.append(self.last_train_loss)
        samples = (step - last_step) * args.per_device_train_batch_size * args.gradient_accumulation_steps
        self._writer.write(
            ProgressEvent(
                step=step,
                total_steps=state.max_steps,
                epoch=float(state.epoch or 0.0),
                eta_seconds=(now - self._started) / max(step, 1) * max(state.max_steps - step, 0),
                train_loss=self.last_train_loss,
                learning_rate=float(logs["learning_rate"]),
                samples_per_second=samples * args.world_size / max(now - last_time, 1e-9),
                message=f"step {step}/{state.max_steps} train loss {self.last_train_loss:.4f}",
            )
        )

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        metrics = metrics or {}
        window = self._window_losses or [self.last_train_loss]
        point = CurvePoint(
            step=state.global_step,
            epoch=float(state.epoch or 0.0),
            train_loss=sum(window) / len(window),
            validation_loss=float(metrics["eval_loss"]),
            metrics={name: float(metrics[f"eval_{name}"]) for name in METRIC_NAMES if f"eval_{name}" in metrics},
        )
        self.learning_curve.append(point)
        self._window_losses = []
        summary = " ".join(f"{name} {value:.4f}" for name, value in point.metrics.items())
        self._writer.write(
            EvaluationEvent(
                step=point.step,
                epoch=point.epoch,
                validation_loss=point.validation_loss,
                metrics=point.metrics,
                message=f"step {point.step} validation loss {point.validation_loss:.4f} {summary}",
            )
        )

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        # NOTE: the Trainer updates best_global_step (with its own comparison) before it saves, so this is exactly
        # the checkpoint load_best_model_at_end will restore.
        is_best = state.best_global_step == state.global_step
        self._writer.write(
            CheckpointEvent(
                step=state.global_step,
                is_best=is_best,
                metric=self.metric_at(state.global_step),
                message=f"checkpoint at step {state.global_step}" + (" (best so far)" if is_best else ""),
            )
        )

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.stopped_early(state):
            reason = f"{self._metric_name} did not improve for {self._patience} evaluations"
            self._writer.write(EarlyStoppedEvent(step=state.global_step, reason=reason, message=reason))

    def stopped_early(self, state: TrainerState) -> bool:
        # NOTE: only EarlyStoppingCallback and a cancel end training before max_steps.
        return state.global_step < state.max_steps and not self._cancel.is_set()

    def metric_at(self, step: int) -> float:
        """The value of the metric for the best model (macro_f1, accuracy or loss) at the evaluation of this step."""
        for point in reversed(self.learning_curve):
            if point.step == step:
                return point.validation_loss if self._metric_name == "loss" else point.metrics[self._metric_name]
        return float("nan")


class CancellationCallback(TrainerCallback):
    """Stops training at the next (sub)step once `cancel` is set (the worker sets it on SIGTERM). Under DDP the ranks
    agree first (an all-reduce of the flag), so that all of them leave the loop at the same step: a rank that went on
    alone would wait in its next gradient all-reduce for ranks that are gone."""

    def __init__(self, cancel: threading.Event) -> None:
        self._cancel = cancel
        self._group: Any = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # NOTE: a gloo group even beside nccl: the flag stays on the CPU, so checking it never waits for the GPU.
            self._group = torch.distributed.new_group(backend="gloo")

    def on_substep_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._stop_if_cancelled(control)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._stop_if_cancelled(control)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._stop_if_cancelled(control)

    def _stop_if_cancelled(self, control: TrainerControl) -> None:
        if self._group is not None:
            flag = torch.tensor([int(self._cancel.is_set())])
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, group=self._group)
            if flag.item():
                self._cancel.set()
        if self._cancel.is_set():
            control.should_training_stop = True
            # NOTE: an evaluation or a checkpoint of a job being cancelled is wasted time before the manager's kill.
            control.should_evaluate = False
            control.should_save = False
