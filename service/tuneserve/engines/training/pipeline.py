"""One fine-tuning job from spec to artifacts: data -> model -> Trainer -> best checkpoint -> task parameters -> ONNX ->
result.

The modality decides only the preparation (data, model, datasets) and the artifacts/export steps: `_Prepared` here for
text, `vision_pipeline.PreparedImages` for images; the Trainer, callbacks, early stopping, diagnostics and the result
are shared. The task (`tuneserve.tasks`, spec.task) decides the rest: the head's width and loss, the metrics, what is
fitted before training (`Task.prepare`: the regression scaler) and after it on the validation split (`Task.tune`: the
multi-label thresholds), all saved as `task.json` beside the model."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainerState
from transformers.utils import logging as hf_logging

from tuneserve.engines.export.text import TextInput, export_onnx
from tuneserve.engines.training.artifacts import write_metrics, write_model_artifacts
from tuneserve.engines.training.calibrate import fit_after_training
from tuneserve.engines.training.callbacks import CurvePoint, EventReporter, StopCallback
from tuneserve.engines.training.data import (
    EncodedDataset,
    Splits,
    encode,
    make_splits,
    read_examples,
    targets,
)
from tuneserve.engines.training.diagnostics import FitDiagnosis, diagnose, train_sample, validation_figures
from tuneserve.engines.training.events import CancelledEvent, EventWriter, ExportEvent, PreemptedEvent, ResultEvent
from tuneserve.engines.training.model import TextClassifier
from tuneserve.engines.training.seq_length import AUTO_SEQ_LENGTH, measure
from tuneserve.engines.training.spec import ARTIFACTS, StopRequests, TrainingSpec
from tuneserve.engines.training.token_data import encode_tagged, read_tagged
from tuneserve.engines.training.token_model import TokenClassifier
from tuneserve.engines.training.trainer import (
    DeviceChoice,
    build_trainer,
    choose_device,
    new_classifier,
    remove_checkpoints,
    resumable_checkpoint,
)
from tuneserve.engines.training.variants import export_variants
from tuneserve.tasks import Calibration, Task, TaskParams, TaskReport, get_task

if TYPE_CHECKING:  # NOTE: imported when a job is an image one: text jobs must not need efficientnet_lite_pytorch
    from tuneserve.engines.training.vision_pipeline import PreparedImages

@dataclass(frozen=True)
class _Prepared:
    """The model with a new head, its tokenizer and the encoded data, ready for the Trainer."""

    model: TextClassifier
    tokenizer: PreTrainedTokenizerBase
    splits: Splits[Any]         # text Examples, or TaggedExamples of a per-token task
    train_set: EncodedDataset
    validation_set: EncodedDataset
    input_names: list[str]
    max_seq_length: int
    labels: list[str]
    task: Task
    params: TaskParams          # fitted on the training rows before training (the regression scaler)

    def encode(self, examples: list[Any]) -> EncodedDataset:
        """Examples as the model reads them: texts (or pairs) with their encoded targets, or (a per-token task)
        sentences of words with each word's tag on its first sub-word."""
        if self.task.per_token:
            return encode_tagged(
                examples, self.tokenizer, self.labels, input_names=self.input_names,
                max_seq_length=self.max_seq_length,
            )
        return encode(
            examples, self.tokenizer, self.labels, task=self.task, params=self.params, input_names=self.input_names,
            max_seq_length=self.max_seq_length,
        )

    def inputs(self, examples: list[Any]) -> list[TextInput]:
        """The model inputs of examples as serving takes them: texts, (text, text_pair) pairs, or lists of words."""
        if self.task.per_token:
            return [list(example.tokens) for example in examples]
        if self.params.text_pairs:
            return [(example.text, example.text_pair) for example in examples]
        return [example.text for example in examples]

    def write_artifacts(self, output_dir: Path) -> None:
        write_model_artifacts(
            output_dir,
            self.model,
            self.tokenizer,
            labels=self.labels,
            input_names=self.input_names,
            max_seq_length=self.max_seq_length,
        )

    def export(self, output_dir: Path, writer: EventWriter, params: TaskParams) -> float:
        """Export the best model to ONNX (raises when parity fails), report it, and return the parity max diff."""
        export = export_onnx(
            self.model,
            self.tokenizer,
            output_dir / ARTIFACTS["onnx"],
            example_texts=self.inputs(self.splits.validation),
            max_seq_length=self.max_seq_length,
            params=params,
        )
        writer.write(ExportEvent.of(export, examples="text pairs" if params.text_pairs else "texts"))
        return export.parity.max_abs_diff

    def export_variants(
        self, spec: TrainingSpec, output_dir: Path, writer: EventWriter, params: TaskParams, fp32_value: float
    ) -> dict[str, float]:
        validation = self.splits.validation
        return export_variants(
            spec,
            output_dir,
            writer,
            self.tokenizer,
            (self.inputs(validation), targets(validation)),
            task=self.task,
            params=params,
            max_seq_length=self.max_seq_length,
            fp32_value=fp32_value,
        )


def run_training(
    spec: TrainingSpec, writer: EventWriter, stop: StopRequests, *, scratch_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
) -> ResultEvent | CancelledEvent | PreemptedEvent | None:
    """Train, export and write spec.output_dir; return the last event to report. Checkpoints go to the spec's
    checkpoint directory (default: scratch_dir/checkpoints, scratch_dir being the job directory): a run finding a
    complete checkpoint there resumes from it, a preempted run leaves its own there, a finished run removes them.

    Under torchrun every rank trains (the Trainer runs DDP); only rank 0 exports and writes artifacts, and the other
    ranks return None once the last collective step (the fit diagnosis) is done. `callbacks` go to the Trainer after
    the job's own (a search's pruning and budget: engines/training/search.py)."""
    hp = spec.hyperparameters
    if spec.threads > 0:
        torch.set_num_threads(spec.threads)
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    device = choose_device(spec.device)
    prepared: _Prepared | PreparedImages
    if spec.backbone.modality == "image":
        from tuneserve.engines.training.vision_pipeline import prepare_images

        prepared = prepare_images(spec)
    else:
        prepared = _prepare(spec)
    reporter = EventReporter(
        writer, stop.is_set, metric_name=spec.best_metric(), early_stopping_patience=hp.early_stopping_patience
    )
    checkpoints = Path(spec.checkpoint_dir) if spec.checkpoint_dir else scratch_dir / "checkpoints"
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
        callbacks=[reporter, StopCallback(stop.cancel, stop.preempt), *callbacks],
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
    fit = _diagnose_fit(trainer, prepared, reporter, params, report)
    figures = validation_figures(report, task.report_labels(spec.labels))
    remove_checkpoints(checkpoints)
    if not trainer.is_world_process_zero():
        return None
    output_dir = Path(spec.output_dir)
    prepared.write_artifacts(output_dir)
    params.save(output_dir)
    parity_max_abs_diff = prepared.export(output_dir, writer, params)
    result = _result(trainer.state, reporter, prepared.splits, device, summary, parity_max_abs_diff, spec, fit)
    # NOTE: the figures of the model as it is served (multi-label: at the tuned thresholds, which were tuned on these
    # same rows, so a little optimistic; Evaluate on held-out rows is the clean figure).
    result.validation_metrics = {**result.validation_metrics, **report.metrics}
    result.validation_confusion_matrix, result.validation_per_class = figures
    result.label_thresholds = dict(zip(spec.labels, params.thresholds, strict=False))
    result.calibration = calibration.to_dict() if calibration else {}
    result.max_seq_length = getattr(prepared, "max_seq_length", 0)
    result.variant_metric = task.guard_metric
    result.variant_metrics = prepared.export_variants(
        spec, output_dir, writer, params, report.metrics[task.guard_metric]
    )
    if task.guard_metric == "macro_f1":  # NOTE: the field older clients read
        result.variant_macro_f1 = result.variant_metrics
    write_metrics(output_dir, result, reporter.learning_curve)
    # NOTE: a cancel that arrives during export still wins: the manager has not seen a result yet.
    if stop.cancel.is_set():
        return CancelledEvent(step=trainer.state.global_step, message="cancelled")
    return result


def _prepare(spec: TrainingSpec) -> _Prepared:
    hp, task = spec.hyperparameters, get_task(spec.task)
    splits = _load_splits(spec, task)
    params = task.prepare(targets(splits.train), TaskParams(task=task.name, text_pairs=spec.text_pairs))
    tokenizer = AutoTokenizer.from_pretrained(spec.backbone.path, use_fast=True)
    model = new_classifier(TokenClassifier if task.per_token else TextClassifier, spec, splits.train)
    max_seq_length = _max_seq_length(hp.max_seq_length, tokenizer, model)
    if hp.max_seq_length == AUTO_SEQ_LENGTH:
        pairs = [example.text_pair for example in splits.train] if spec.text_pairs else None
        max_seq_length = measure(tokenizer, [example.text for example in splits.train], pairs, max_seq_length)
    input_names = model.input_names(tokenizer)
    prepared = _Prepared(
        model, tokenizer, splits, EncodedDataset([]), EncodedDataset([]), input_names, max_seq_length,
        list(spec.labels), task, params,
    )
    return dataclasses.replace(
        prepared, train_set=prepared.encode(splits.train), validation_set=prepared.encode(splits.validation)
    )


def _load_splits(spec: TrainingSpec, task: Task) -> Splits[Any]:
    hp = spec.hyperparameters
    if task.per_token:
        tagged = read_tagged(Path(spec.validation_path), task) if spec.validation_path else None
        return make_splits(
            read_tagged(Path(spec.train_path), task), tagged, spec.labels, task, fraction=hp.validation_fraction,
            seed=hp.seed,
        )
    validation = (
        read_examples(Path(spec.validation_path), task, pairs=spec.text_pairs) if spec.validation_path else None
    )
    return make_splits(
        read_examples(Path(spec.train_path), task, pairs=spec.text_pairs),
        validation,
        spec.labels,
        task,
        fraction=hp.validation_fraction,
        seed=hp.seed,
    )


def _max_seq_length(requested: int, tokenizer: PreTrainedTokenizerBase, model: TextClassifier) -> int:
    """The requested length, capped by what the backbone's position embeddings and its tokenizer allow (auto: that
    cap, which the training texts then lower)."""
    positions = int(getattr(model.backbone.config, "max_position_embeddings", 512))
    cap = min(positions, int(tokenizer.model_max_length))
    return cap if requested == AUTO_SEQ_LENGTH else min(requested, cap)


def _tune(
    trainer: Trainer, prepared: _Prepared | PreparedImages, task: Task, labels: list[str], calibrate: bool
) -> tuple[TaskParams, Calibration | None, TaskReport]:
    """The task parameters fitted on the best checkpoint's validation outputs (the calibration, then multi-label:
    each label's threshold), the calibration's figures, and the validation report of the model as it will be
    served."""
    validation = targets(prepared.splits.validation)
    logits = _logits(trainer, prepared.validation_set, "figures")
    params, calibration = fit_after_training(
        task, logits, validation, labels, prepared.params, calibrate=calibrate
    )
    return params, calibration, task.report(task.outputs(logits, params), validation, labels, params)


def _diagnose_fit(
    trainer: Trainer, prepared: _Prepared | PreparedImages, reporter: EventReporter, params: TaskParams,
    report: TaskReport,
) -> FitDiagnosis:
    """The best checkpoint's fit metric (the task's) on a sample of its own training rows, against its validation
    value."""
    task, labels = prepared.task, prepared.labels
    rows: list[Any] = prepared.splits.train  # text or image examples: encode() takes its own kind
    sample = train_sample(rows, int(trainer.args.seed))
    logits = _logits(trainer, prepared.encode(sample), "train")
    train_score = task.metrics(task.outputs(logits, params), targets(sample), labels, params)[task.fit_metric]
    _best_point(trainer.state, reporter)  # NOTE: raises when training ended without an evaluation
    return diagnose(
        train_score, report.metrics[task.fit_metric], reporter.learning_curve, len(sample), metric=task.fit_metric
    )


def _logits(trainer: Trainer, dataset: Any, prefix: str) -> np.ndarray:
    """The raw outputs on the dataset's rows as the task judges a row (a per-token task's per word)."""
    output = trainer.predict(dataset, metric_key_prefix=prefix)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    rows: np.ndarray = dataset.row_logits(np.asarray(logits, dtype=np.float32))
    return rows


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
    parity_max_abs_diff: float,
    spec: TrainingSpec,
    fit: FitDiagnosis,
) -> ResultEvent:
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
        parity_max_abs_diff=parity_max_abs_diff,
        device=device.device,
        precision=device.precision,
        final_train_loss=reporter.last_train_loss,
        learning_curve=[dataclasses.asdict(point) for point in reporter.learning_curve],
        fit=fit.to_dict(),
        message=f"best {metric_name} {state.best_metric:.4f} at step {state.best_global_step}",
    )
