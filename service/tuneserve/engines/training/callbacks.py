"""Trainer callbacks: progress, evaluation, checkpoint and early-stop events, cancellation and preemption.

The Trainer calls its callbacks in order: `DefaultFlowCallback` first sets the flags to log, evaluate and save, then
these callbacks may read and override them (a cancel clears the evaluate/save flags so that stopping takes seconds; a preemption sets save).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
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

# NOTE: what the Trainer adds to every evaluation besides the task's metrics (tuneserve.tasks: Task.report)
_TRAINER_FIGURES = frozenset({"loss", "runtime", "samples_per_second", "steps_per_second", "model_preparation_time"})


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
        self, writer: EventWriter, stopped: Callable[[], bool], *, metric_name: str, early_stopping_patience: int,
        evaluates: bool = True,
    ) -> None:
        """`stopped` says whether training was told to stop (cancel or preemption): then it did not stop early.
        `evaluates` is False for a run without evaluations (a refit): its checkpoints are not "not evaluated"."""
        self._writer = writer
        self._evaluates = evaluates
        self._stopped = stopped
        self._metric_name = metric_name
        self._patience = early_stopping_patience
        self._stop_reason = ""
        self._started = 0.0
        self._start_step = 0
        self._last_log = (0, 0.0)
        self.last_train_loss = float("nan")
        self.learning_curve: list[CurvePoint] = []
        self.auto_actions: list[str] = []  # what FineTune's auto did to the run (JobResult.auto_actions)
        self._window_losses: list[float] = []

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._started = time.monotonic()
        self._start_step = state.global_step
        self._last_log = (state.global_step, self._started)
        if state.global_step > 0:  # resumed from a checkpoint: its log history holds the curve so far
            self._replay(state.log_history)
            self._writer.write(
                ProgressEvent(
                    step=state.global_step,
                    total_steps=state.max_steps,
                    epoch=float(state.epoch or 0.0),
                    eta_seconds=0.0,
                    train_loss=self.last_train_loss,
                    learning_rate=next((float(e["learning_rate"]) for e in reversed(state.log_history)
                                        if "learning_rate" in e), 0.0),
                    samples_per_second=0.0,
                    message=f"resumed from the checkpoint at step {state.global_step}/{state.max_steps}",
                )
            )

    def _replay(self, log_history: list[dict[str, Any]]) -> None:
        """Rebuild the learning curve from a resumed checkpoint's log history (what on_log and on_evaluate saw)."""
        for entry in log_history:
            if _is_step_log(entry):
                self._record_loss(float(entry["loss"]))
            elif "eval_loss" in entry:
                metrics = {k: float(v) for k, v in entry.items() if k.startswith("eval_")}
                self._record_evaluation(int(entry["step"]), float(entry.get("epoch", 0.0)), metrics)

    def _record_loss(self, loss: float) -> None:
        self.last_train_loss = loss
        self._window_losses.append(loss)

    def _record_evaluation(self, step: int, epoch: float, metrics: dict[str, float]) -> CurvePoint:
        window = self._window_losses or [self.last_train_loss]
        point = CurvePoint(
            step=step,
            epoch=epoch,
            train_loss=sum(window) / len(window),
            validation_loss=float(metrics["eval_loss"]),
            metrics={
                name.removeprefix("eval_"): float(value) for name, value in metrics.items()
                if name.startswith("eval_") and name.removeprefix("eval_") not in _TRAINER_FIGURES
            },
        )
        self.learning_curve.append(point)
        self._window_losses = []
        return point

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs or not _is_step_log(logs):
            return
        now = time.monotonic()
        step = state.global_step
        last_step, last_time = self._last_log
        self._last_log = (step, now)
        self._record_loss(float(logs["loss"]))
        samples = (step - last_step) * args.per_device_train_batch_size * args.gradient_accumulation_steps
        self._writer.write(
            ProgressEvent(
                step=step,
                total_steps=state.max_steps,
                epoch=float(state.epoch or 0.0),
                # NOTE: the rate of this run's own steps (a resumed run started at its checkpoint's step)
                eta_seconds=(now - self._started) / max(step - self._start_step, 1) * max(state.max_steps - step, 0),
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
        point = self._record_evaluation(state.global_step, float(state.epoch or 0.0), metrics or {})
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
        metric = self.metric_at(state.global_step)
        evaluated = not math.isnan(metric)  # NOTE: a preemption's checkpoint may come between evaluations
        self._writer.write(
            CheckpointEvent(
                step=state.global_step,
                is_best=is_best,
                metric=metric if evaluated else None,
                message=f"checkpoint at step {state.global_step}"
                + (" (best so far)" if is_best else "" if evaluated or not self._evaluates
                   else " (not evaluated: training was stopped)"),
            )
        )

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.stopped_early(state):
            reason = self._stop_reason or f"{self._metric_name} did not improve for {self._patience} evaluations"
            self._writer.write(EarlyStoppedEvent(step=state.global_step, reason=reason, message=reason))

    def auto_stopped(self, action: str) -> None:
        """An automatic rule stopped training (auto_stop.OverfitStop): the early-stop event gives `action` as its
        reason, and the result lists it among auto_actions."""
        self._stop_reason = action
        self.auto_actions.append(action)

    def stopped_early(self, state: TrainerState) -> bool:
        # NOTE: only EarlyStoppingCallback, a cancel and a preemption end training before max_steps.
        return state.global_step < state.max_steps and not self._stopped()

    def metric_at(self, step: int) -> float:
        """The value of the metric for the best model (the task's, or loss) at the evaluation of this step."""
        for point in reversed(self.learning_curve):
            if point.step == step:
                return point.validation_loss if self._metric_name == "loss" else point.metrics[self._metric_name]
        return float("nan")


class StopCallback(TrainerCallback):
    """Stops training when the worker is told to (worker.py's signal handlers set the events):
    - `cancel` (SIGINT): at the next (sub)step, with no evaluation or checkpoint, since the job is being thrown away;
    - `preempt` (SIGTERM): after the current optimizer step, keeping the evaluation that was due, and with a checkpoint
      of that step that training resumes from (weights, optimizer, scheduler, RNG and early-stopping state).

    Under DDP the ranks agree first (an all-reduce of both flags), so that all of them leave the loop at the same step:
    a rank that went on alone would wait in its next gradient all-reduce for ranks that are gone."""

    def __init__(self, cancel: threading.Event, preempt: threading.Event) -> None:
        self._cancel = cancel
        self._preempt = preempt
        self._group: Any = None
        self._saved_step = -1

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # NOTE: a gloo group even beside nccl: the flag stays on the CPU, so checking it never waits for the GPU.
            self._group = torch.distributed.new_group(backend="gloo")

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._saved_step = state.global_step

    def on_substep_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._agree()
        if self._cancel.is_set():
            _stop_now(control)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._agree()
        if self._cancel.is_set():
            _stop_now(control)
        elif self._preempt.is_set():
            control.should_training_stop = True  # the evaluation and checkpoint due at this step still happen
            args.load_best_model_at_end = False  # NOTE: the run ends here: reloading the best weights is wasted time

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # NOTE: the Trainer calls this also when the loop was left mid-epoch, and its flow callback then asks for the
        # epoch's evaluation: only a whole epoch gets it (on resume the epoch goes on; its end evaluates then).
        self._agree()
        if self._cancel.is_set():
            _stop_now(control)
        elif self._preempt.is_set():
            control.should_training_stop = True
            control.should_evaluate = control.should_evaluate and _whole_epoch(state)
            control.should_save = control.should_evaluate or self._saved_step != state.global_step

    def _agree(self) -> None:
        if self._group is None:
            return
        flags = torch.tensor([int(self._cancel.is_set()), int(self._preempt.is_set())])
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX, group=self._group)
        for flag, event in zip(flags.tolist(), (self._cancel, self._preempt), strict=True):
            if flag:
                event.set()


def _stop_now(control: TrainerControl) -> None:
    control.should_training_stop = True
    # NOTE: an evaluation or a checkpoint of a job being cancelled is wasted time before the manager's kill.
    control.should_evaluate = False
    control.should_save = False


def _whole_epoch(state: TrainerState) -> bool:
    epoch = float(state.epoch or 0.0)
    return abs(epoch - round(epoch)) < 1e-6


def _is_step_log(logs: dict[str, Any]) -> bool:
    # NOTE: the Trainer also logs evaluation metrics and an end-of-training summary; only step logs carry both "loss"
    # and "learning_rate".
    return "loss" in logs and "learning_rate" in logs
