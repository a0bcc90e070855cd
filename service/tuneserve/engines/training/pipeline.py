"""One fine-tuning job from spec to artifacts: data -> model -> Trainer -> best checkpoint -> task parameters ->
[refit on train+validation: `refit`] -> ONNX -> result.

The modality decides only the preparation (data, model, datasets) and the artifacts/export steps:
`text_pipeline.PreparedText` for text, `vision_pipeline.PreparedImages` for images; the Trainer, callbacks, early
stopping, diagnostics and the result are shared. The task (`tuneserve.tasks`, spec.task) decides the rest: the head's
width and loss, the metrics, what is fitted before training (`Task.prepare`: the regression scaler) and after it on
the validation split (`Task.tune`: the multi-label thresholds), all saved as `task.json` beside the model. A search's
trials stop before the ONNX step (`run_training(export=False)`), and `export_saved` exports the best one once the
search is over."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import Trainer, TrainerCallback, TrainerState
from transformers.utils import logging as hf_logging

from tuneserve.engines.training import refit, soup
from tuneserve.engines.training.artifacts import write_metrics
from tuneserve.engines.training.auto_stop import auto_callbacks
from tuneserve.engines.training.calibrate import fit_after_training
from tuneserve.engines.training.callbacks import CurvePoint, EventReporter, StopCallback
from tuneserve.engines.training.data import Splits, targets
from tuneserve.engines.training.diagnostics import FitDiagnosis, diagnose, train_sample, validation_figures
from tuneserve.engines.training.events import CancelledEvent, EventWriter, PreemptedEvent, ResultEvent
from tuneserve.engines.training.spec import StopRequests, TrainingSpec
from tuneserve.engines.training.text_pipeline import PreparedText, prepare_text, saved_text
from tuneserve.engines.training.trainer import (
    DeviceChoice,
    build_trainer,
    choose_device,
    remove_checkpoints,
    resumable_checkpoint,
    row_logits,
)
from tuneserve.tasks import Calibration, Task, TaskParams, TaskReport

if TYPE_CHECKING:  # NOTE: imported when a job is an image one: text jobs must not need efficientnet_lite_pytorch
    from tuneserve.engines.training.vision_pipeline import PreparedImages


def run_training(
    spec: TrainingSpec, writer: EventWriter, stop: StopRequests, *, scratch_dir: Path,
    callbacks: Sequence[TrainerCallback] = (), export: bool = True, refit_members: int = 1,
) -> ResultEvent | CancelledEvent | PreemptedEvent | None:
    """Train, export and write spec.output_dir; return the last event to report. Checkpoints go to the spec's
    checkpoint directory (default: scratch_dir/checkpoints, scratch_dir being the job directory): a run finding a
    complete checkpoint there resumes from it, a preempted run leaves its own there, a finished run removes them. With
    hyperparameters.refit "true", a fresh model then trains on train+validation and is the one written
    (engines/training/refit.py); a run finding the first run's outcome saved goes straight to the refit.

    Under torchrun every rank trains (the Trainer runs DDP); only rank 0 exports and writes artifacts, and the other
    ranks return None once the last collective step (the fit diagnosis, or the refit) is done. `callbacks` go to the
    first run's Trainer after the job's own (a search's pruning and budget: engines/training/search.py).
    `export=False` (a search's trials) stops before the ONNX export: output_dir gets the model, tokenizer and task
    parameters, and `export_saved` turns it into the whole version later (the search's best trial only).
    `refit_members` > 1 (a search's served trial) averages that many refits, each in its own order of the rows
    (engines/training/soup.py)."""
    hp = spec.hyperparameters
    if spec.threads > 0:
        torch.set_num_threads(spec.threads)
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    device = choose_device(spec.device)
    prepared: PreparedText | PreparedImages
    if spec.backbone.modality == "image":
        from tuneserve.engines.training.vision_pipeline import prepare_images

        prepared = prepare_images(spec)
    else:
        prepared = prepare_text(spec)
    checkpoints = Path(spec.checkpoint_dir) if spec.checkpoint_dir else scratch_dir / "checkpoints"
    refit_dir = refit.directory(checkpoints)
    first = refit.load(refit_dir) if hp.refit == "true" else None
    if first is None:
        trained = _first_run(spec, prepared, writer, stop, device, checkpoints, callbacks)
        if not isinstance(trained, refit.FirstRun):
            return trained
        first = trained
        if hp.refit == "true" and _rank_zero():
            refit.save(refit_dir, first)
    remove_checkpoints(checkpoints)
    step = first.steps
    if hp.refit == "true":
        rows = [*prepared.splits.train, *prepared.splits.validation]
        prepared = prepared.with_fresh_model(spec, rows)
        refitted = soup.retrain(spec, prepared, first, writer, stop, device=device, path=refit_dir,
                                members=refit_members)
        if not isinstance(refitted, refit.Refitted):
            return refitted
        refit.describe(first.result, refitted)
        refit.carry_calibration(spec, prepared, first, device)
        step = refitted.steps
    if not _rank_zero():
        return None
    result = _publish(spec, prepared, first, writer, export)
    refit.forget(refit_dir)
    # NOTE: a cancel that arrives during export still wins: the manager has not seen a result yet.
    if stop.cancel.is_set():
        return CancelledEvent(step=step, message="cancelled")
    return result


def _first_run(
    spec: TrainingSpec, prepared: PreparedText | PreparedImages, writer: EventWriter, stop: StopRequests,
    device: DeviceChoice, checkpoints: Path, callbacks: Sequence[TrainerCallback],
) -> refit.FirstRun | CancelledEvent | PreemptedEvent:
    """Train with evaluation, keep the best checkpoint, fit the task parameters on its validation outputs and
    diagnose its fit: the result but for the export."""
    hp = spec.hyperparameters
    reporter = EventReporter(
        writer, stop.is_set, metric_name=spec.best_metric(), early_stopping_patience=hp.early_stopping_patience
    )
    resume = resumable_checkpoint(checkpoints)
    trainer = build_trainer(
        prepared.model,
        prepared.tokenizer,
        hp=hp,
        labels=spec.labels,
        task=prepared.task,
        params=prepared.params,
        train_set=prepared.train_set,
        validation_set=prepared.validation_set,
        checkpoint_dir=checkpoints,
        device=device,
        callbacks=[reporter, StopCallback(stop.cancel, stop.preempt), *auto_callbacks(spec, reporter), *callbacks],
        report=writer.write,
    )
    summary = trainer.train(resume_from_checkpoint=str(resume) if resume else None).metrics
    if stop.cancel.is_set():
        return CancelledEvent(step=trainer.state.global_step, message="cancelled")
    if stop.preempt.is_set():
        saved = checkpoints / f"checkpoint-{trainer.state.global_step}"
        return PreemptedEvent(
            step=trainer.state.global_step, checkpoint=str(saved),
            message=f"stopped at step {trainer.state.global_step}/{trainer.state.max_steps}; the checkpoint there "
            "resumes it",
        )
    # NOTE: before the checkpoints go: under DDP, every rank loads the best checkpoint, and the predictions below
    # (tuning, the fit diagnosis) are collective steps every rank reaches.
    task = prepared.task
    params, calibration, report = _tune(trainer, prepared, task, spec.labels, hp.calibrate)
    fit, scale = _diagnose_fit(trainer, prepared, reporter, params, report)
    result = _result(trainer.state, reporter, prepared.splits, device, summary, spec, fit)
    # NOTE: the figures of the model as it is served (multi-label: at the tuned thresholds, which were tuned on these
    # same rows, so a little optimistic; Evaluate on held-out rows is the clean figure).
    result.validation_metrics = {**result.validation_metrics, **report.metrics}
    result.validation_confusion_matrix, result.validation_per_class = validation_figures(
        report, task.report_labels(spec.labels)
    )
    result.label_thresholds = dict(zip(spec.labels, params.thresholds, strict=False))
    result.calibration = {**calibration.to_dict(), "logit_scale": scale} if calibration else {}
    result.max_seq_length = getattr(prepared, "max_seq_length", 0)
    result.variant_metric = task.guard_metric
    return refit.FirstRun(result, params, trainer.state.global_step)


def _publish(
    spec: TrainingSpec, prepared: PreparedText | PreparedImages, first: refit.FirstRun, writer: EventWriter, export: bool
) -> ResultEvent:
    """Write prepared.model (the best checkpoint, or the refit model) with the first run's task parameters and, unless
    `export` is off (a search's trial), export it, judge its variants and complete the result."""
    output_dir, result, params = Path(spec.output_dir), first.result, first.params
    prepared.write_artifacts(output_dir)
    params.save(output_dir)
    if export:
        _export(prepared, spec, writer, params, result)
    return result


def _rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def export_saved(spec: TrainingSpec, writer: EventWriter, result: ResultEvent) -> ResultEvent:
    """Export the version that `run_training(spec, export=False)` left in spec.output_dir as run_training would have:
    model.onnx (parity-checked on the same validation rows), its variants and metrics.json; `result` is that run's,
    returned with the export's fields."""
    output_dir = Path(spec.output_dir)
    prepared: PreparedText | PreparedImages
    if spec.backbone.modality == "image":
        from tuneserve.engines.training.vision_pipeline import saved_images

        prepared = saved_images(spec, output_dir)
    else:
        prepared = saved_text(spec, output_dir)
    _export(prepared, spec, writer, prepared.params, result)
    return result


def _export(
    prepared: PreparedText | PreparedImages, spec: TrainingSpec, writer: EventWriter, params: TaskParams,
    result: ResultEvent,
) -> None:
    """The version's last artifacts: model.onnx (raises when parity fails), its variants judged on the task's guard
    metric, and metrics.json; their figures go into `result`."""
    output_dir, task = Path(spec.output_dir), prepared.task
    result.parity_max_abs_diff = prepared.export(output_dir, writer, params)
    result.variant_metric = task.guard_metric
    result.variant_metrics = prepared.export_variants(
        spec, output_dir, writer, params, result.validation_metrics[task.guard_metric]
    )
    if task.guard_metric == "macro_f1":  # NOTE: the field older clients read
        result.variant_macro_f1 = result.variant_metrics
    write_metrics(output_dir, result)


def _tune(
    trainer: Trainer, prepared: PreparedText | PreparedImages, task: Task, labels: list[str], calibrate: bool
) -> tuple[TaskParams, Calibration | None, TaskReport]:
    """The task parameters fitted on the best checkpoint's validation outputs (the calibration, then multi-label:
    each label's threshold), the calibration's figures, and the validation report of the model as it will be
    served."""
    validation = targets(prepared.splits.validation)
    logits = row_logits(trainer, prepared.validation_set, "figures")
    params, calibration = fit_after_training(
        task, logits, validation, labels, prepared.params, calibrate=calibrate
    )
    return params, calibration, task.report(task.outputs(logits, params), validation, labels, params)


def _diagnose_fit(
    trainer: Trainer, prepared: PreparedText | PreparedImages, reporter: EventReporter, params: TaskParams,
    report: TaskReport,
) -> tuple[FitDiagnosis, list[float]]:
    """The best checkpoint's fit metric (the task's) on a sample of its own training rows, against its validation
    value; and its logit scale on those rows (`Task.logit_scale`), which a refit's temperature is carried by."""
    task, labels = prepared.task, prepared.labels
    rows: list[Any] = prepared.splits.train  # text or image examples: encode() takes its own kind
    sample = train_sample(rows, int(trainer.args.seed))
    logits = row_logits(trainer, prepared.encode(sample), "train")
    train_score = task.metrics(task.outputs(logits, params), targets(sample), labels, params)[task.fit_metric]
    _best_point(trainer.state, reporter)  # NOTE: raises when training ended without an evaluation
    return diagnose(
        train_score, report.metrics[task.fit_metric], reporter.learning_curve, len(sample), metric=task.fit_metric
    ), task.logit_scale(logits)


def _best_point(state: TrainerState, reporter: EventReporter) -> CurvePoint:
    if state.best_global_step is None or state.best_metric is None:
        raise RuntimeError("training ended without an evaluation, so there is no best checkpoint")
    return next(point for point in reporter.learning_curve if point.step == state.best_global_step)


def _result(
    state: TrainerState,
    reporter: EventReporter,
    splits: Splits[Any],
    device: DeviceChoice,
    summary: dict[str, float],
    spec: TrainingSpec,
    fit: FitDiagnosis,
) -> ResultEvent:
    """The first run's result, its export's figures (parity, variants) not yet known."""
    best = _best_point(state, reporter)
    assert state.best_global_step is not None and state.best_metric is not None
    metric_name = spec.best_metric()
    return ResultEvent(
        validation_metrics={**best.metrics, "loss": best.validation_loss},
        best_metric_name=metric_name,
        best_metric=float(state.best_metric),
        best_step=state.best_global_step,
        stopped_early=reporter.stopped_early(state),
        train_seconds=float(summary["train_runtime"]),
        samples_per_second=float(summary["train_samples_per_second"]),
        train_examples=len(splits.train),
        validation_examples=len(splits.validation),
        parity_max_abs_diff=0.0,  # NOTE: set by the export
        device=device.device,
        precision=device.precision,
        final_train_loss=reporter.last_train_loss,
        learning_curve=[dataclasses.asdict(point) for point in reporter.learning_curve],
        fit=fit.to_dict(),
        auto_actions=list(reporter.auto_actions),
        message=f"best {metric_name} {state.best_metric:.4f} at step {state.best_global_step}",
    )
