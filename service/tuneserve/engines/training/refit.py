"""Refit (hyperparameters.refit "true"): put the rows the validation split took to use. After the first run has chosen
its best step on the validation split and everything fitted on its validation outputs is done (the temperature, the
multi-label thresholds, the fit diagnosis, the validation figures), a fresh model from the same backbone, with the
same hyperparameters and seed, trains on the training and validation rows together, with no evaluation. That model is
the one written, exported (ONNX parity still checked on the validation inputs) and served.

- **Steps**: `refit_steps = ceil(best_step x (train_rows + validation_rows) / train_rows)`: as many passes over the data
  (epochs) as the best checkpoint had made, each pass over more rows.
- **Schedule**: the first run's, stretched by the same ratio: warm-up and learning-rate decay run over
  `ceil(first_run_steps x (train_rows + validation_rows) / train_rows)` steps (first_run_steps: the steps the first
  run was scheduled for, `trainer.total_steps`) and the refit stops at refit_steps, so its learning rate follows the
  best checkpoint's path and gradual unfreezing opens the same blocks in the same epochs. Its class weights come from
  the rows it trains on.
- **Kept from the first run**: the multi-label thresholds and the regression scaler (`task.json`), and every figure of
  the result (validation metrics, confusion matrix, per-class figures, calibration, learning curve, fit diagnosis,
  best step and metric). They describe the first run's best checkpoint on the validation rows;
  the served model has trained on those rows, so no validation figure of it would be honest (Evaluate it on held-out
  rows). With an int8 variant, its guard compares the refit model's fp32 and int8 graphs on the validation rows: the
  difference is a fair test of quantisation, the two values are flattering. The result says what was refit:
  `refit`, `refit_steps`, `refit_examples` (train + validation rows), `refit_seconds`.
- **Carried to the refit model**: the temperature (single-label classification), scaled by the two models' logit
  scales on the same sample of training rows (`carry_calibration`; calibrate.carried says why), into `task.json` and
  `calibration.refit_temperature`. A soup (soup.py) is carried as one model: its average's logits.
- **Cancel, preemption, restarts**: before the refit trains, the first run's outcome is saved in
  `<checkpoint_dir>-refit/` (`first_run.json`: the result so far; `task.json`: the fitted task parameters), and the
  first run's checkpoints are removed. The refit checkpoints there, at the first run's cadence (each epoch, or every
  eval_steps; the latest kept). A worker started again on the spec (a preemption, a kill, a server restart) finds
  `first_run.json` and resumes the refit from its newest checkpoint, or from its start, without training the first run
  again. SIGTERM saves a checkpoint of the current step first; SIGINT stops at the next step. The directory is removed
  once the model version is written.
"""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from transformers import PreTrainedTokenizerBase

from tuneserve.engines.training.calibrate import carried
from tuneserve.engines.training.callbacks import EventReporter, StopCallback
from tuneserve.engines.training.data import EncodedDataset, Splits
from tuneserve.engines.training.diagnostics import train_sample
from tuneserve.engines.training.events import (
    CancelledEvent,
    EventWriter,
    PreemptedEvent,
    PrefixedWriter,
    RefitEvent,
    ResultEvent,
)
from tuneserve.engines.training.head import TransferClassifier
from tuneserve.engines.training.spec import StopRequests, TrainingSpec
from tuneserve.engines.training.trainer import (
    DeviceChoice,
    build_trainer,
    model_logits,
    resumable_checkpoint,
    total_steps,
)
from tuneserve.tasks import Task, TaskParams

if TYPE_CHECKING:  # NOTE: the image modules import efficientnet_lite_pytorch, which text jobs must not need
    from tuneserve.engines.training.vision_data import ImageDataset

FIRST_RUN = "first_run.json"


class Prepared(Protocol):
    """What the refit reads of a prepared job (text_pipeline.PreparedText, vision_pipeline.PreparedImages)."""

    @property
    def model(self) -> TransferClassifier: ...
    @property
    def tokenizer(self) -> PreTrainedTokenizerBase | None: ...
    @property
    def splits(self) -> Splits[Any]: ...
    @property
    def task(self) -> Task: ...
    @property
    def params(self) -> TaskParams: ...
    def training_set(self, examples: list[Any]) -> EncodedDataset | ImageDataset: ...
    def encode(self, examples: list[Any]) -> EncodedDataset | ImageDataset: ...


@dataclass
class FirstRun:
    """What the first run decided: its result so far (the best checkpoint's figures on the validation rows; no export
    yet), the task parameters fitted on its validation outputs, and the steps it trained."""

    result: ResultEvent
    params: TaskParams
    steps: int


@dataclass(frozen=True)
class Refitted:
    steps: int
    examples: int
    seconds: float
    members: int = 1     # refits averaged into the served model (a search's refit soup: engines/training/soup.py)


def directory(checkpoint_dir: Path) -> Path:
    """Where a spec's refit keeps the first run's outcome and its own checkpoints: beside checkpoint_dir."""
    return checkpoint_dir.with_name(f"{checkpoint_dir.name}-refit")


def save(path: Path, first: FirstRun) -> None:
    """Write the first run's outcome into the refit directory (first_run.json last, by rename: it marks it whole)."""
    path.mkdir(parents=True, exist_ok=True)
    first.params.save(path)
    body = {"result": first.result.fields(), "message": first.result.message, "steps": first.steps}
    partial = path / f"{FIRST_RUN}.partial"
    partial.write_text(json.dumps(body, indent=2) + "\n")
    os.replace(partial, path / FIRST_RUN)


def load(path: Path) -> FirstRun | None:
    """The first run's outcome an earlier worker saved, or None."""
    try:
        body = json.loads((path / FIRST_RUN).read_text())
    except (OSError, ValueError):
        return None
    result = ResultEvent(**body["result"], message=body.get("message", ""))
    return FirstRun(result, TaskParams.load(path), int(body.get("steps", 0)))


def forget(path: Path) -> None:
    """Remove the refit directory once the refit model is written (rank 0 only: nothing reads it after training)."""
    shutil.rmtree(path, ignore_errors=True)


def scaled(steps: int, train_rows: int, validation_rows: int) -> int:
    """steps on train_rows scaled to train_rows + validation_rows rows, rounded up."""
    return math.ceil(steps * (train_rows + validation_rows) / train_rows)


def retrain(
    spec: TrainingSpec, prepared: Prepared, first: FirstRun, writer: EventWriter, stop: StopRequests, *,
    device: DeviceChoice, path: Path, member: int = 0,
) -> Refitted | CancelledEvent | PreemptedEvent:
    """Train prepared.model (a fresh one) on the training and validation rows for the scaled best step, in place;
    resume from the newest checkpoint under `path` if an earlier worker left one. `member` k > 0 (a refit soup's,
    engines/training/soup.py) takes the rows in another order (data seed hp.seed + k), all else the same."""
    # NOTE: the first run's model, optimizer state and Trainer are no longer referenced but may sit in reference
    # cycles: free them before a second model trains beside them (on a GPU above all).
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    hp = spec.hyperparameters
    train, validation = prepared.splits.train, prepared.splits.validation
    rows = [*train, *validation]
    steps = scaled(first.result.best_step, len(train), len(validation))
    resume = resumable_checkpoint(path)
    name = f"refit (soup member {member + 1}, its own order of the rows)" if member else "refit"
    if resume is None:
        writer.write(RefitEvent(
            steps=steps, examples=len(rows), best_step=first.result.best_step,
            message=f"{name}: a fresh model trains on the {len(rows)} training and validation rows for {steps} steps "
            f"(best step {first.result.best_step} x {len(rows)}/{len(train)} rows); the validation figures stay "
            "the first run's",
        ))
    refit_writer = PrefixedWriter(writer, f"[refit {member + 1}] " if member else "[refit] ")
    reporter = EventReporter(
        refit_writer, stop.is_set, metric_name=spec.best_metric(), early_stopping_patience=0, evaluates=False
    )
    trainer = build_trainer(
        prepared.model,
        prepared.tokenizer,
        hp=replace(hp, max_steps=steps, early_stopping_patience=0),
        labels=spec.labels,
        task=prepared.task,
        params=prepared.params,
        train_set=prepared.training_set(rows),
        validation_set=None,
        checkpoint_dir=path,
        device=device,
        callbacks=[reporter, StopCallback(stop.cancel, stop.preempt)],
        report=refit_writer.write,
        schedule_steps=scaled(total_steps(hp, len(train)), len(train), len(validation)),
        data_seed=hp.seed + member if member else None,
    )
    summary = trainer.train(resume_from_checkpoint=str(resume) if resume else None).metrics
    step = trainer.state.global_step
    if stop.cancel.is_set():
        return CancelledEvent(step=step, message="cancelled during the refit")
    if stop.preempt.is_set():
        return PreemptedEvent(
            step=step, checkpoint=str(path / f"checkpoint-{step}"),
            message=f"stopped the refit at step {step}/{steps}; the checkpoint there resumes it (the first run is "
            "kept)",
        )
    return Refitted(steps=steps, examples=len(rows), seconds=float(summary["train_runtime"]))


def carry_calibration(spec: TrainingSpec, prepared: Prepared, first: FirstRun, device: DeviceChoice) -> None:
    """Carry the first run's temperature to the refit model in prepared.model (calibrate.carried: scaled by the two
    models' logit scales on the same sample of training rows), into first.params (what is served) and the result's
    calibration (`refit_temperature`). The first run's scale is its calibration's `logit_scale` (a search's trial keeps
    it in its result.json)."""
    first_scale = [float(x) for x in first.result.calibration.get("logit_scale", [])]
    if not first_scale or not first.params.temperature:
        return
    sample = train_sample(prepared.splits.train, spec.hyperparameters.seed)
    logits = model_logits(prepared.model, prepared, spec.hyperparameters, spec.labels, first.params,
                          prepared.encode(sample), device)
    first.params = carried(first.params, first_scale, prepared.task.logit_scale(logits))
    first.result.calibration = {**first.result.calibration, "refit_temperature": list(first.params.temperature)}


def describe(result: ResultEvent, refitted: Refitted) -> None:
    """Mark the result as the refit model's: its refit figures, and a message that says which figures are whose."""
    result.refit = True
    result.refit_steps, result.refit_examples, result.refit_seconds, result.refit_members = (
        refitted.steps, refitted.examples, refitted.seconds, refitted.members
    )
    result.message = f"{result.message} (first run, validation); {served(result)}"


def served(result: ResultEvent) -> str:
    """What a refit result serves, in words (the job's message; a search's too)."""
    soup = f", {result.refit_members} data orders averaged" if result.refit_members > 1 else ""
    return (f"served: refit on {result.refit_examples} training and validation rows for {result.refit_steps} steps"
            f"{soup}")
