"""What the text and the image task models share: a backbone whose pooled features go through dropout into a new
linear head as wide as the task asks (`Task.num_outputs`: one column per class or label, one for regression), trained
with the task's loss (`Task.loss`: cross-entropy, per-label BCE or MSE/Huber, with its balancing weights), and
checkpointed as `model.safetensors` (the whole state dict) + `classifier.json` (the head's shape, the task and what
rebuilds the backbone).

`TextClassifier` (model.py) and `ImageClassifier` (vision.py) load the backbone and pool its output; the attribute
names here (`backbone`, `dropout`, `head`) are the state-dict keys of every exported and checkpointed model.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase, default_data_collator
from transformers.modeling_outputs import SequenceClassifierOutput

from tuneserve.tasks import Task, get_task

WEIGHTS_FILE = "model.safetensors"
CLASSIFIER_FILE = "classifier.json"

C = TypeVar("C", bound="TransferClassifier")


class TransferClassifier(nn.Module, ABC):
    """A backbone with a new head; subclasses say how to load the backbone and pool its output."""

    loss_weights: torch.Tensor | None

    def __init__(
        self,
        backbone: nn.Module,
        num_features: int,
        num_labels: int,
        *,
        dropout: float,
        task: str = "classification",
        loss_weights: torch.Tensor | None = None,
        loss_options: dict[str, Any] | None = None,
    ) -> None:
        """num_labels: the head's width (`Task.num_outputs`); loss_weights: the task's balancing weights (per-class
        weights, per-label pos_weight); loss_options: label_smoothing, regression_loss."""
        super().__init__()
        self.backbone = backbone
        self.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_features, num_labels)
        self.task: Task = get_task(task)
        self.loss_options = dict(loss_options or {})
        # NOTE: a non-persistent buffer follows the model to its device but stays out of checkpoints and ONNX.
        self.register_buffer("loss_weights", loss_weights, persistent=False)

    @classmethod
    def from_backbone(
        cls: type[C],
        backbone_path: str,
        num_labels: int,
        *,
        dropout: float,
        task: str = "classification",
        loss_weights: torch.Tensor | None = None,
        loss_options: dict[str, Any] | None = None,
        pretrained: bool = True,
        **model_options: Any,
    ) -> C:
        """A new head of width num_labels on the pretrained backbone at backbone_path; pretrained=False builds the same
        architecture from random weights (the "scratch" baseline); model_options: the subclass's own constructor
        arguments (a text model's pair_encoding)."""
        backbone, options = cls._load_backbone(backbone_path, pretrained=pretrained)
        return cls(
            backbone,
            num_labels=num_labels,
            dropout=dropout,
            task=task,
            loss_weights=loss_weights,
            loss_options=loss_options,
            **options,
            **model_options,
        )

    @classmethod
    def from_checkpoint(cls: type[C], checkpoint_dir: Path) -> C:
        meta = json.loads((checkpoint_dir / CLASSIFIER_FILE).read_text())
        model = cls._from_meta(meta, checkpoint_dir)
        model.load_state_dict(load_file(checkpoint_dir / WEIGHTS_FILE))
        return model.eval()

    def save_checkpoint(self, checkpoint_dir: Path) -> None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in self.state_dict().items()}
        save_file(state, checkpoint_dir / WEIGHTS_FILE, metadata={"format": "pt"})
        meta = {
            "num_labels": self.num_labels, "dropout": self.dropout.p, "task": self.task.name,
            **self._save_backbone_meta(checkpoint_dir),
        }
        (checkpoint_dir / CLASSIFIER_FILE).write_text(json.dumps(meta, indent=2))

    def classify(
        self, features: torch.Tensor, labels: torch.Tensor | None, *, dropout: bool = True
    ) -> SequenceClassifierOutput:
        """Raw head outputs ("logits") of the pooled backbone features [batch, num_features], and the task's loss when
        targets ("labels", as `Task.encode_targets` made them) are given."""
        logits = self.head(self.dropout(features) if dropout else features)
        # NOTE: the task computes its loss in fp32 even when the forward ran under bf16/fp16 autocast.
        loss = None if labels is None else self.task.loss(
            logits, labels, weights=self.loss_weights, options=self.loss_options
        )
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def collator(self, tokenizer: PreTrainedTokenizerBase | None) -> Any:
        """The Trainer's data collator: text rows padded per batch; image tensors (no tokenizer) just stacked."""
        return DataCollatorWithPadding(tokenizer) if tokenizer is not None else default_data_collator

    @classmethod
    @abstractmethod
    def _load_backbone(cls, backbone_path: str, *, pretrained: bool) -> tuple[nn.Module, dict[str, Any]]:
        """The backbone, and the subclass's own constructor arguments that go with it."""

    @classmethod
    @abstractmethod
    def _from_meta(cls: type[C], meta: dict[str, Any], checkpoint_dir: Path) -> C:
        """The architecture a checkpoint's classifier.json describes, with random weights."""

    @abstractmethod
    def _save_backbone_meta(self, checkpoint_dir: Path) -> dict[str, Any]:
        """Write what the checkpoint needs besides the weights to rebuild the backbone; return classifier.json's
        subclass keys."""
