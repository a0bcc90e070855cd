"""The contract between the job manager (serving process) and a training worker (its own process).

The manager writes a `TrainingSpec` as JSON into the job directory and starts
`python -m tuneserve.engines.training.worker JOB_DIR/spec.json`. The worker reports through JSON lines on its
standard output (it moves everything else that would print there to stderr), one `WorkerEvent` per line:

    {"kind": "progress", "step": 10, "total_steps": 100, "epoch": 0.4, "eta_seconds": 31.2, "train_loss": 1.2,
     "learning_rate": 4e-5, "samples_per_second": 12.5}
    {"kind": "evaluation", "step": 25, "epoch": 1.0, "validation_loss": 0.7, "metrics": {"accuracy": .., "macro_f1": ..}}
    {"kind": "checkpoint", "step": 25, "is_best": true, "metric": 0.91}
    {"kind": "early_stopped", "step": 75, "reason": "macro_f1 did not improve for 2 evaluations"}
    {"kind": "unfrozen", "epoch": 2, "trainable_blocks": 2, "total_blocks": 6, "embeddings": false}  gradual unfreezing
    {"kind": "export", "format": "onnx", "parity_max_abs_diff": 3e-7, "parity_examples": 64, "size_bytes": 90000000}
    {"kind": "trial", "number": 2, "state": "complete", "params": {"learning_rate": "3.1e-05", ..}, "metric": 0.8,
     "duration_seconds": 41.0, "steps": 60, "reason": ""}     FineTune(search=N): a trial started ("running") or ended
    {"kind": "refit", "steps": 38, "examples": 64, "best_step": 30}   hyperparameters.refit "true": the refit starts
                              (its progress and checkpoint events follow, their messages prefixed "[refit] "; a
                              search's refit soup: one as each member starts, "[refit k] ", and one with its outcome)
    {"kind": "result", ...the fields of tuneserve.v1.JobResult...}            last line of a successful run
                              (learning_curve and fit included; the manager adds baselines and transfer_verdict)
    {"kind": "failed", "reason": "ONNX parity check failed: max |logit diff| 0.02 > 1e-4"}   then exit code 1
    {"kind": "cancelled", "step": 40}                                          then exit code 0
    {"kind": "preempted", "step": 40, "checkpoint": "JOB_DIR/checkpoints/checkpoint-40"}  then exit code 75

Every event may carry "message", one human-readable line. Two signals stop the worker, each at the next step (a
TrainerCallback sets `control.should_training_stop`):
- SIGINT is a cancel: it stops at once, writes "cancelled" and exits 0.
- SIGTERM is a preemption (the server shutting down, a Kubernetes eviction): it finishes the optimizer step, saves a
  checkpoint that resumes training exactly (weights, optimizer, scheduler, RNG, early-stopping state), writes
  "preempted" and exits 75 (EX_TEMPFAIL: run me again).

Checkpoints go to `checkpoint_dir`, one per evaluation (the best and the latest kept) plus the preemption's. A worker
started on a spec whose checkpoint_dir holds a complete checkpoint resumes from the newest one; on success it removes
the directory. A refit keeps what the first run decided and its own checkpoints in `<checkpoint_dir>-refit`, which a
worker started again resumes from without training the first run again (engines/training/refit.py).

The worker writes the model version's artifacts into `output_dir` (see `ARTIFACTS`); the manager moves that directory
into the registry only after a "result" event and exit code 0, so a failed job never leaves a servable model.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# Files of a model version directory (<data_dir>/models/<model_id>/<version>/), as the runtime reads them.
ARTIFACTS = {
    "onnx": "model.onnx",                  # single file, inputs in the backbone's forward order, output "logits"
    "labels": "labels.json",               # {"labels": ["business", "sport", ...]}, index = logit column
    "preprocessing": "preprocessing.json",  # {"modality": "text", "tokenizer": "tokenizer", "max_seq_length": 128,
                                            #  "input_names": ["input_ids", "attention_mask", "token_type_ids"]}
                                            # (a bi-encoder's add each name + PAIR_INPUT_SUFFIX: text_pair's own ids)
                                            # or {"modality": "image", "input_name": "pixel_values", "resize": 256,
                                            #  "crop": 224, "mean": [..3], "std": [..3]} (engines/imaging.Preprocessing)
    "tokenizer": "tokenizer",              # tokenizer.save_pretrained() directory
    "checkpoint": "checkpoint",            # best checkpoint: model.safetensors + configs
    "metrics": "metrics.json",             # the JobResult fields, learning curve included
    "onnx_int8": "model.int8.onnx",        # optional dynamically quantised variant (ExportOptions.int8)
    "variants": "variants.json",           # {"fp32": {METRIC: .., "served": true},
                                            #  "int8": {METRIC: .., "served": bool, "reason": ".."}}
                                            # METRIC: the task's guard metric (macro_f1 | micro_f1 | rmse)
    "task": "task.json",                   # tuneserve.tasks.TaskParams: task, text_pairs, pair_encoding, thresholds,
                                            # scaler
}

# The suffix of a bi-encoder's inputs that hold the second text ("input_ids_pair", "attention_mask_pair"[, ..]).
PAIR_INPUT_SUFFIX = "_pair"

RegressionLoss = Literal["mse", "huber"]
PairEncoding = Literal["cross", "bi"]
Freeze = Literal["none", "all", "top_k"]
Scheduler = Literal["linear", "cosine", "constant"]
Refit = Literal["auto", "true", "false"]


@dataclass
class Hyperparameters:
    """Defaults chosen so that a first run with no options on a small, imbalanced dataset works (docs/guides/fine-tuning.md explains)."""

    epochs: int = 4
    max_steps: int = 0
    batch_size: int = 16
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_seq_length: int = 128          # 0 = from the data (the worker: seq_length.seq_length_from); FineTune's auto
    early_stopping_patience: int = 2
    metric_for_best_model: str = ""     # "" = the task's default_metric (the job resolves it); one of task.metrics_for_best
    class_weighting: bool = True
    seed: int = 42
    validation_fraction: float = 0.2
    label_smoothing: float = 0.0
    head_dropout: float = 0.1
    eval_steps: int = 0
    freeze: Freeze = "none"             # all: linear probe (head only); top_k: the last trainable_layers blocks + head
    trainable_layers: int = 0           # k of freeze=top_k (0 = unset)
    layer_lr_decay: float = 1.0         # block i from the top trains at learning_rate * decay^i; 1 = off
    gradual_unfreezing: bool = False    # head only in epoch 0, then one more block from the top each epoch
    gradient_accumulation_steps: int = 1
    lr_scheduler: Scheduler = "linear"  # after warmup: linear decay to 0, cosine, or constant
    augment_flip: bool = True           # image backbones: random horizontal flips of training images
    augment_random_resized_crop: bool = True  # image backbones: random resized crops (scale 0.35-1) of training images
    regression_loss: RegressionLoss = "mse"    # regression: on the standardised target; huber has delta 1 (one std)
    refit: Refit = "auto"               # "true": retrain on train+validation for the best step count and serve that
                                        # model (engines/training/refit.py); the job manager resolves "auto" to
                                        # "true" or "false" (core/training/auto.py), and a worker given "auto" does
                                        # not refit
    calibrate: bool = True              # fitted on the validation split: temperature scaling (classification),
                                        # Platt scaling per label (multi-label)
    pair_encoding: PairEncoding = "cross"  # text pairs only: "cross" encodes text and text_pair as one sequence; "bi"
                                        # encodes each alone with the shared backbone (engines/training/pair_encoder.py)


@dataclass
class ExportSpec:
    int8: bool = False                  # also write model.int8.onnx (dynamic quantisation) and judge it
    # The int8 variant is served only if the task's guard metric (task.guard_metric) on validation moves at most this
    # far the wrong way: a higher-is-better metric (macro_f1, micro_f1) may drop at most this many points (0.01 = 1
    # point); a lower-is-better one (rmse) may rise at most this fraction of the fp32 value (0.01 = 1%), since an
    # error in the target's units has no fixed scale.
    int8_max_f1_drop: float = 0.01


@dataclass
class SearchSpec:
    """FineTune(search=N): N trials over the hyperparameters the caller left unset (engines/training/search.py)."""

    trials: int = 0                     # 0 = no search: one run with the spec's hyperparameters
    budget_seconds: float = 0.0         # resolved by the manager (> 0): no trial starts past it, a running one stops
    seed: int = 42                      # the TPE sampler's seed
    fixed: list[str] = field(default_factory=list)  # hyperparameters the caller set: never searched


@dataclass
class BackboneRef:
    name: str                 # catalog name, or the path/hub id the user gave
    path: str                 # local directory (or hub id when the deployment allows the hub)
    modality: Literal["text", "image"] = "text"


@dataclass
class TrainingSpec:
    job_id: str
    backbone: BackboneRef
    train_path: str                    # JSONL rows as core/data stores them: {"text" | "image", TARGET[, "text_pair"]}
                                        # with TARGET "label": str, "labels": [str] or "target": float (by task)
    labels: list[str]                  # index order of the head's columns (regression: [])
    output_dir: str
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    validation_path: str | None = None  # None: stratified split of train_path by hyperparameters.validation_fraction
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0                    # torch intra-op threads; 0 = leave torch's default
    export: ExportSpec = field(default_factory=ExportSpec)
    init: Literal["pretrained", "scratch"] = "pretrained"   # scratch: same architecture, random weights (baseline)
    checkpoint_dir: str = ""            # the Trainer's resumable checkpoints; "" = <spec's directory>/checkpoints
    task: str = "classification"        # tuneserve.tasks name: classification | multi_label | regression
    text_pairs: bool = False            # text rows carry "text_pair", encoded as hyperparameters.pair_encoding says
    search: SearchSpec = field(default_factory=SearchSpec)
    # FineTune chose early stopping itself (auto: the caller left early_stopping_patience unset), so a run that shows
    # overfitting stops at once rather than after the patience (engines/training/auto_stop.py)
    stop_on_overfit: bool = False

    def best_metric(self) -> str:
        """metric_for_best_model, or the task's default when unset."""
        from tuneserve.tasks import get_task  # NOTE: lazily: the worker reads its spec before the heavy imports

        return self.hyperparameters.metric_for_best_model or get_task(self.task).default_metric

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainingSpec:
        raw: dict[str, Any] = json.loads(text)
        raw["backbone"] = BackboneRef(**raw["backbone"])
        raw["hyperparameters"] = Hyperparameters(**raw["hyperparameters"])
        raw["export"] = ExportSpec(**raw.get("export", {}))
        raw["search"] = SearchSpec(**raw.get("search", {}))
        return cls(**raw)

    def save(self, path: Path) -> None:
        path.write_text(self.to_json())

    @classmethod
    def load(cls, path: Path) -> TrainingSpec:
        return cls.from_json(path.read_text())


@dataclass(frozen=True)
class StopRequests:
    """What the worker's signal handlers set: `cancel` (SIGINT) ends the job, `preempt` (SIGTERM) pauses it."""

    cancel: threading.Event = field(default_factory=threading.Event)
    preempt: threading.Event = field(default_factory=threading.Event)

    def is_set(self) -> bool:
        return self.cancel.is_set() or self.preempt.is_set()
