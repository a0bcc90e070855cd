"""What the text and the image task models share: a backbone whose pooled features go through dropout into a new
linear head, trained with cross-entropy (optionally class-weighted and label-smoothed), and checkpointed as
`model.safetensors` (the whole state dict) + `classifier.json` (the head's shape and what rebuilds the backbone).

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
from transformers.modeling_outputs import SequenceClassifierOutput

WEIGHTS_FILE = "model.safetensors"
CLASSIFIER_FILE = "classifier.json"

C = TypeVar("C", bound="TransferClassifier")


class TransferClassifier(nn.Module, ABC):
    """A backbone with a new classification head; subclasses say how to load the backbone and pool its output."""

    class_weights: torch.Tensor | None

    def __init__(
        self,
        backbone: nn.Module,
        num_features: int,
        num_labels: int,
        *,
        dropout: float,
        class_weights: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_features, num_labels)
        self.label_smoothing = label_smoothing
        # NOTE: a non-persistent buffer follows the model to its device but stays out of checkpoints and ONNX.
        self.register_buffer("class_weights", class_weights, persistent=False)

    @classmethod
    def from_backbone(
        cls: type[C],
        backbone_path: str,
        num_labels: int,
        *,
        dropout: float,
        class_weights: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        pretrained: bool = True,
    ) -> C:
        """A new head on the pretrained backbone at backbone_path; pretrained=False builds the same architecture from
        random weights (the "scratch" baseline)."""
        backbone, options = cls._load_backbone(backbone_path, pretrained=pretrained)
        return cls(
            backbone,
            num_labels=num_labels,
            dropout=dropout,
            class_weights=class_weights,
            label_smoothing=label_smoothing,
            **options,
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
        meta = {"num_labels": self.num_labels, "dropout": self.dropout.p, **self._save_backbone_meta(checkpoint_dir)}
        (checkpoint_dir / CLASSIFIER_FILE).write_text(json.dumps(meta, indent=2))

    def classify(self, features: torch.Tensor, labels: torch.Tensor | None) -> SequenceClassifierOutput:
        """Logits of the pooled backbone features [batch, num_features], and the loss when labels are given."""
        logits = self.head(self.dropout(features))
        loss = None if labels is None else self._loss(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # NOTE: the loss is computed in fp32 even when the forward ran under bf16/fp16 autocast.
        return nn.functional.cross_entropy(
            logits.float(), labels, weight=self.class_weights, label_smoothing=self.label_smoothing
        )

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
