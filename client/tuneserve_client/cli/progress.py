"""The live view of a fine-tuning job in the CLI (`finetune --wait`, `jobs watch`): a rich progress bar driven by
WatchJob's progress events, and one line above it for each other event (state, evaluation, checkpoint, early stop,
export)."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from tuneserve_client.cli.render import size, state_name
from tuneserve_client.proto.tuneserve.v1.training_pb2 import (
    CheckpointSaved,
    EarlyStopped,
    EvaluationDone,
    ExportDone,
    JobEvent,
    StateChanged,
    TrainingProgress,
)


def _eta(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def state_line(event: StateChanged) -> str:
    return f"state {state_name(event.state)}" + (f": {event.reason}" if event.reason else "")


def evaluation_line(event: EvaluationDone) -> str:
    metrics = "  ".join(f"{name} {value:.4f}" for name, value in sorted(event.metrics.items()))
    return f"eval step {event.step} (epoch {event.epoch:.2f})  val_loss {event.validation_loss:.4f}  {metrics}"


def checkpoint_line(event: CheckpointSaved) -> str:
    best = f" (new best, {event.metric:.4f})" if event.is_best else ""
    return f"checkpoint saved at step {event.step}{best}"


def early_stop_line(event: EarlyStopped) -> str:
    return f"early stop at step {event.step}" + (f": {event.reason}" if event.reason else "")


def export_line(event: ExportDone) -> str:
    return (
        f"exported {event.format} ({size(event.size_bytes)}), "
        f"parity max |diff| {event.parity_max_abs_diff:.2e} on {event.parity_examples} examples"
    )


_LINES: dict[str, Callable[..., str]] = {
    "state_changed": state_line,
    "evaluation": evaluation_line,
    "checkpoint": checkpoint_line,
    "early_stopped": early_stop_line,
    "export": export_line,
}


# NOTE: each task's default metric for the best checkpoint
_HEADLINE = ("micro_f1", "macro_f1", "rmse")  # micro_f1 first: multi-label reports macro_f1 too


class JobProgressView:
    """Feed it a job's events (`on_event`) inside `with`; the bar shows steps done/total, ETA, train loss and the
    latest validation headline metric (macro_f1; micro_f1 for multi-label, rmse for regression). `on_event` may be
    called from another thread (rich's Progress is thread-safe)."""

    def __init__(self, console: Console, job_id: str) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps  eta {task.fields[eta]}  loss {task.fields[loss]}  val {task.fields[f1]}"),
            console=console,
        )
        self._task: TaskID = self._progress.add_task(f"job {job_id}", total=None, eta="-", loss="-", f1="-")

    def __enter__(self) -> JobProgressView:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def on_event(self, event: JobEvent) -> None:
        kind = event.WhichOneof("kind")
        if kind == "progress":
            self._advance(event.progress)
            return
        shown = next((name for name in _HEADLINE if name in event.evaluation.metrics), "") if kind == "evaluation" else ""
        if shown:
            self._progress.update(self._task, f1=f"{shown} {event.evaluation.metrics[shown]:.4f}")
        line = _LINES[kind](getattr(event, kind)) if kind in _LINES else event.message
        if line:
            self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _advance(self, p: TrainingProgress) -> None:
        total = p.total_steps or None
        eta = _eta(p.eta_seconds) if p.eta_seconds > 0 else "-"
        self._progress.update(self._task, total=total, completed=p.step, eta=eta, loss=f"{p.train_loss:.4f}")
