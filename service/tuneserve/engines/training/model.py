"""The task model: a pretrained text backbone, the pooling it was pretrained with, dropout and a new linear head.

A checkpoint directory holds `model.safetensors` (the whole state dict), the backbone's `config.json` and
`classifier.json` (pooling, labels count, dropout, backbone config), so it reloads without the original backbone.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import SequenceClassifierOutput

Pooling = Literal["mean", "cls"]

WEIGHTS_FILE = "model.safetensors"
CLASSIFIER_FILE = "classifier.json"


def read_pooling(backbone_dir: Path) -> Pooling:
    """How the backbone was pretrained to summarise a text: sentence-transformers says so in 1_Pooling/config.json."""
    config_path = backbone_dir / "1_Pooling" / "config.json"
    if not config_path.is_file():
        # NOTE: a plain encoder checkpoint: its CLS hidden state is the usual classification input.
        return "cls"
    config = json.loads(config_path.read_text())
    if config.get("pooling_mode_mean_tokens"):
        return "mean"
    if config.get("pooling_mode_cls_token"):
        return "cls"
    raise ValueError(f"unsupported sentence-transformers pooling in {config_path}: {config}")


class TextClassifier(nn.Module):
    class_weights: torch.Tensor | None

    def __init__(
        self,
        backbone: PreTrainedModel,
        num_labels: int,
        *,
        pooling: Pooling,
        dropout: float,
        class_weights: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling: Pooling = pooling
        self.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.config.hidden_size, num_labels)
        self.label_smoothing = label_smoothing
        # NOTE: a non-persistent buffer follows the model to its device but stays out of checkpoints and ONNX.
        self.register_buffer("class_weights", class_weights, persistent=False)

    @classmethod
    def from_backbone(
        cls,
        backbone_dir: str,
        num_labels: int,
        *,
        dropout: float,
        class_weights: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        pretrained: bool = True,
    ) -> TextClassifier:
        """A new head on pretrained weights (a local directory, or a hub id where the deployment allows the hub).
        pretrained=False builds the same architecture from random weights (the "scratch" baseline)."""
        if pretrained:
            # NOTE: transformers 5 loads weights in their stored dtype by default; training needs fp32 master weights.
            backbone = AutoModel.from_pretrained(backbone_dir, dtype=torch.float32)
        else:
            config = AutoConfig.from_pretrained(backbone_dir)
            backbone = AutoModel.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
        pooling = read_pooling(Path(backbone_dir)) if Path(backbone_dir).is_dir() else "cls"
        return cls(
            backbone,
            num_labels,
            pooling=pooling,
            dropout=dropout,
            class_weights=class_weights,
            label_smoothing=label_smoothing,
        )

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: Path) -> TextClassifier:
        meta = json.loads((checkpoint_dir / CLASSIFIER_FILE).read_text())
        config = AutoConfig.from_pretrained(checkpoint_dir)
        model = cls(
            AutoModel.from_config(config),  # type: ignore[no-untyped-call]
            meta["num_labels"],
            pooling=meta["pooling"],
            dropout=meta["dropout"],
        )
        model.load_state_dict(load_file(checkpoint_dir / WEIGHTS_FILE))
        return model.eval()

    def save_checkpoint(self, checkpoint_dir: Path) -> None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in self.state_dict().items()}
        save_file(state, checkpoint_dir / WEIGHTS_FILE, metadata={"format": "pt"})
        self.backbone.config.save_pretrained(checkpoint_dir)
        meta = {
            "pooling": self.pooling,
            "num_labels": self.num_labels,
            "dropout": self.dropout.p,
            "backbone_config": self.backbone.config.to_dict(),
        }
        (checkpoint_dir / CLASSIFIER_FILE).write_text(json.dumps(meta, indent=2))

    def input_names(self, tokenizer: PreTrainedTokenizerBase) -> list[str]:
        """The inputs to feed, in forward() order; token types only where the tokenizer and the backbone use them."""
        names = ["input_ids", "attention_mask"]
        backbone_params = inspect.signature(self.backbone.forward).parameters
        if "token_type_ids" in tokenizer.model_input_names and "token_type_ids" in backbone_params:
            names.append("token_type_ids")
        return names

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        backbone_inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            backbone_inputs["token_type_ids"] = token_type_ids
        hidden = self.backbone(**backbone_inputs).last_hidden_state
        logits = self.head(self.dropout(self._pool(hidden, attention_mask)))
        loss = None if labels is None else self._loss(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        # NOTE: the clamp keeps an all-padding row finite, as sentence-transformers' own mean pooling does.
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # NOTE: the loss is computed in fp32 even when the forward ran under bf16/fp16 autocast.
        return nn.functional.cross_entropy(
            logits.float(), labels, weight=self.class_weights, label_smoothing=self.label_smoothing
        )
