"""Builds the Hugging Face Trainer for a fine-tune: optimizer groups, schedule, evaluation, checkpoints, precision."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from transformers import (
    EarlyStoppingCallback,
    EvalPrediction,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer import OPTIMIZER_NAME, TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from tuneserve.engines.training.data import EncodedDataset, Targeted, targets
from tuneserve.engines.training.events import UnfrozenEvent
from tuneserve.engines.training.head import C, TransferClassifier
from tuneserve.engines.training.spec import Hyperparameters, TrainingSpec
from tuneserve.engines.training.strategies import GradualUnfreezing, LayerMap, apply_freeze, parameter_groups
from tuneserve.tasks import Task, TaskParams, get_task

if TYPE_CHECKING:  # NOTE: the image modules import efficientnet_lite_pytorch, which text jobs must not need
    from tuneserve.engines.training.vision_data import ImageDataset

Precision = Literal["fp32", "bf16", "fp16"]

# NOTE: enough progress events to draw a smooth bar, few enough that a long job does not flood the event store.
_PROGRESS_EVENTS = 100
# NOTE: "constant" keeps the warm-up (a random head's first gradients must not hit the backbone at full rate).
_SCHEDULERS = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


@dataclass(frozen=True)
class DeviceChoice:
    device: Literal["cpu", "cuda"]
    precision: Precision


def choose_device(requested: Literal["auto", "cpu", "cuda"]) -> DeviceChoice:
    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise RuntimeError("device 'cuda' was requested but torch sees no CUDA GPU")
    if requested == "cpu" or not has_cuda:
        return DeviceChoice("cpu", "fp32")
    return DeviceChoice("cuda", "bf16" if torch.cuda.is_bf16_supported() else "fp16")


def remove_checkpoints(path: Path) -> None:
    """Remove a spec's checkpoint directory once training and the steps that read its best checkpoint are done. Until
    then it outlives a run that is preempted or killed, and the next run of the spec resumes from it. Under torchrun
    every rank uses the one path: rank 0 saves the checkpoints and every rank loads the best one at the end (multi-node
    jobs keep it in the job directory on the shared ReadWriteMany volume)."""
    # NOTE: no rank may still be reading the best checkpoint when rank 0 deletes it.
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    if int(os.environ.get("RANK", "0")) == 0:
        shutil.rmtree(path, ignore_errors=True)


def resumable_checkpoint(path: Path) -> Path | None:
    """The newest complete checkpoint under path: the Trainer writes trainer_state.json last, after the weights,
    optimizer, scheduler and RNG state, so a checkpoint cut short by a kill lacks it or holds a partial one."""
    found: list[tuple[int, Path]] = []
    for candidate in path.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = candidate.name.rsplit("-", 1)[-1]
        if not step.isdigit() or not (candidate / OPTIMIZER_NAME).is_file():
            continue
        try:
            json.loads((candidate / TRAINER_STATE_NAME).read_text())
        except (OSError, ValueError):
            continue
        found.append((int(step), candidate))
    return max(found)[1] if found else None


def new_classifier(cls: type[C], spec: TrainingSpec, train: Sequence[Targeted]) -> C:
    """The spec's backbone with a new head as its task and hyperparameters set it up (width, dropout, the task's loss
    with its balancing weights from the training rows, label smoothing, the regression loss), pretrained or, for the
    scratch baseline, from random weights."""
    hp = spec.hyperparameters
    task = get_task(spec.task)
    # NOTE: only a text model takes pair_encoding; "cross" is its default
    options = {"pair_encoding": "bi"} if spec.text_pairs and hp.pair_encoding == "bi" else {}
    weights = task.loss_weights(targets(train), spec.labels) if hp.class_weighting else None
    # NOTE: seeded before the head is created, so that its initial weights repeat too.
    set_seed(hp.seed)
    return cls.from_backbone(
        spec.backbone.path,
        task.num_outputs(spec.labels),
        dropout=hp.head_dropout,
        task=task.name,
        loss_weights=None if weights is None else torch.from_numpy(np.asarray(weights, dtype=np.float32)),
        loss_options={"label_smoothing": hp.label_smoothing, "regression_loss": hp.regression_loss},
        pretrained=spec.init == "pretrained",
        **options,
    )


def metrics_function(
    task: Task, labels: list[str], params: TaskParams
) -> Callable[[EvalPrediction], dict[str, float]]:
    """The Trainer's compute_metrics: every metric of the task, from the head's raw outputs and the encoded targets
    (served as the model will serve them: multi-label decisions at `params`' thresholds, regression in the target's
    units)."""

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        encoded = np.asarray(prediction.label_ids)
        return task.metrics_of_logits(np.asarray(logits, dtype=np.float32), encoded, labels, params)

    return compute_metrics


class TransferTrainer(Trainer):
    """A Trainer whose optimizer gives the pretrained backbone (block by block under layer-wise decay) and the new head
    their own learning rates."""

    def __init__(
        self, *args: Any, hp: Hyperparameters, layers: LayerMap | None, schedule_steps: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._hp = hp
        self._layers = layers
        self._schedule_steps = schedule_steps

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> torch.optim.lr_scheduler.LRScheduler:
        # NOTE: a refit (engines/training/refit.py) stops before the end of its schedule: warm-up and decay then run
        # over schedule_steps, not over the steps it trains.
        return super().create_scheduler(self._schedule_steps or num_training_steps, optimizer)

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            model = self.model if model is None else model
            assert model is not None, "the Trainer was built without a model"
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args)
            self.optimizer = optimizer_cls(self._parameter_groups(model), **optimizer_kwargs)
        return self.optimizer

    def _parameter_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        # NOTE: no weight decay on biases and LayerNorm weights (the Trainer's own rule decides which those are).
        return parameter_groups(model, self._hp, self._layers, set(self.get_decay_parameter_names(model)))


def total_steps(hp: Hyperparameters, train_examples: int) -> int:
    """The optimizer steps a run of hp on train_examples rows takes to its end (the Trainer's own count)."""
    # NOTE: under torchrun (DDP) each step takes a batch on every process, so an epoch has 1/WORLD_SIZE the steps.
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    steps_per_epoch = math.ceil(train_examples / (hp.batch_size * hp.gradient_accumulation_steps * world_size))
    return hp.max_steps if hp.max_steps > 0 else steps_per_epoch * hp.epochs


def training_arguments(
    hp: Hyperparameters, *, checkpoint_dir: Path, device: DeviceChoice, train_examples: int, metric: str,
    greater_is_better: bool, evaluate: bool = True, data_seed: int | None = None,
) -> TrainingArguments:
    """`metric` picks the best checkpoint (and drives early stopping): the task's resolved metric_for_best_model.
    Without `evaluate` (a refit) nothing is evaluated and the last step's model is kept; checkpoints (only the latest)
    still come at the same cadence, for a preempted or killed run to resume from. `data_seed` (None: hp.seed) orders
    the training rows alone: the head's initial weights and dropout still follow hp.seed (a refit soup's members)."""
    strategy = "steps" if hp.eval_steps > 0 else "epoch"
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=hp.batch_size,
        per_device_eval_batch_size=hp.batch_size,
        num_train_epochs=hp.epochs,
        max_steps=hp.max_steps if hp.max_steps > 0 else -1,
        gradient_accumulation_steps=hp.gradient_accumulation_steps,
        learning_rate=hp.learning_rate,
        weight_decay=hp.weight_decay,
        lr_scheduler_type=_SCHEDULERS[hp.lr_scheduler],
        # NOTE: transformers 5 dropped warmup_ratio; a float in [0, 1) given as warmup_steps is a ratio of all steps.
        warmup_steps=hp.warmup_ratio,
        eval_strategy=strategy if evaluate else "no",
        save_strategy=strategy,
        eval_steps=hp.eval_steps or None,
        # NOTE: save_steps only counts under the steps strategy, where it must equal eval_steps for
        # load_best_model_at_end; under the epoch strategy it is ignored.
        save_steps=hp.eval_steps or 1,
        logging_strategy="steps",
        logging_steps=max(1, total_steps(hp, train_examples) // _PROGRESS_EVENTS),
        logging_first_step=True,
        load_best_model_at_end=evaluate,
        metric_for_best_model=metric if evaluate else None,
        greater_is_better=greater_is_better if evaluate else None,
        # NOTE: whole checkpoints (optimizer, scheduler, RNG too), so that a preempted or killed job resumes from its
        # latest; the best (for load_best_model_at_end) and the latest kept.
        save_only_model=False,
        save_total_limit=2 if evaluate else 1,
        restore_callback_states_from_checkpoint=True,  # EarlyStoppingCallback's patience counter
        seed=hp.seed,
        data_seed=data_seed,
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=device.device == "cpu",
        bf16=device.precision == "bf16",
        fp16=device.precision == "fp16",
    )


def build_trainer(
    model: TransferClassifier,
    tokenizer: PreTrainedTokenizerBase | None,
    *,
    hp: Hyperparameters,
    labels: Sequence[str],
    task: Task | None = None,
    params: TaskParams | None = None,
    train_set: EncodedDataset | ImageDataset,
    validation_set: EncodedDataset | ImageDataset | None,
    checkpoint_dir: Path,
    device: DeviceChoice,
    callbacks: list[TrainerCallback],
    report: Callable[[UnfrozenEvent], None] = lambda event: None,
    schedule_steps: int = 0,
    data_seed: int | None = None,
) -> TransferTrainer:
    """checkpoint_dir receives the Trainer's intermediate checkpoints; it must not be the model's output_dir. The
    fine-tuning strategy of `hp` is applied to the model here (requires_grad, optimizer groups, gradual unfreezing,
    which calls `report` each time it opens more of the backbone). `task` (default: classification) gives the metrics
    of each evaluation, and the best-checkpoint metric when hp.metric_for_best_model is unset; `params`: the task
    parameters fitted before training (the regression scaler), which the validation metrics decode with. Without a
    validation_set (a refit) nothing is evaluated, and `schedule_steps` > 0 stretches warm-up and decay over that many
    steps however many hp.max_steps trains; `data_seed` orders the training rows (`training_arguments`)."""
    task = task or get_task("")
    metric = hp.metric_for_best_model or task.default_metric
    args = training_arguments(
        hp, checkpoint_dir=checkpoint_dir, device=device, train_examples=len(train_set), metric=metric,
        greater_is_better=task.greater_is_better(metric), evaluate=validation_set is not None, data_seed=data_seed,
    )
    layers = apply_freeze(model, hp)
    if hp.gradual_unfreezing and layers is not None:
        # NOTE: first, so that the other callbacks see each epoch's trainable parameters.
        callbacks = [GradualUnfreezing(model, hp, layers, report), *callbacks]
    if hp.early_stopping_patience > 0 and validation_set is not None:
        callbacks = [*callbacks, EarlyStoppingCallback(early_stopping_patience=hp.early_stopping_patience)]
    return TransferTrainer(
        model=model,
        args=args,
        data_collator=model.collator(tokenizer),
        train_dataset=train_set,
        eval_dataset=validation_set,
        compute_metrics=metrics_function(task, list(labels), params or TaskParams(task=task.name)),
        callbacks=callbacks,
        hp=hp,
        layers=layers,
        schedule_steps=schedule_steps,
    )


def model_logits(
    model: TransferClassifier, prepared: Any, hp: Hyperparameters, labels: Sequence[str], params: TaskParams,
    encoded: Any, device: DeviceChoice,
) -> np.ndarray:
    """`row_logits` of a model outside its training run (a refit's, a soup's) on `encoded` rows (`prepared`: a
    text_pipeline.PreparedText or vision_pipeline.PreparedImages, for its tokenizer and task)."""
    with tempfile.TemporaryDirectory(prefix="predict-") as scratch:
        trainer = build_trainer(
            model, prepared.tokenizer, hp=hp, labels=labels, task=prepared.task, params=params, train_set=encoded,
            validation_set=None, checkpoint_dir=Path(scratch), device=device, callbacks=[],
        )
        return row_logits(trainer, encoded, "predict")


def row_logits(trainer: Trainer, dataset: Any, prefix: str) -> np.ndarray:
    """The raw outputs on the dataset's rows as the task judges a row (a per-token task's per word)."""
    output = trainer.predict(dataset, metric_key_prefix=prefix)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    rows: np.ndarray = dataset.row_logits(np.asarray(logits, dtype=np.float32))
    return rows
