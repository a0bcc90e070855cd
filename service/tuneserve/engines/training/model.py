"""The task model: a pretrained text backbone, the pooling it was pretrained with, dropout and a new linear head
(`head.TransferClassifier`, shared with the image model).

A checkpoint directory holds `model.safetensors` (the whole state dict), the backbone's `config.json` and
`classifier.json` (pooling, labels count, dropout, backbone config), so it reloads without the original backbone.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import SequenceClassifierOutput

from tuneserve.engines.training.head import TransferClassifier

Pooling = Literal["mean", "cls"]


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


class TextClassifier(TransferClassifier):
    backbone: PreTrainedModel

    def __init__(
        self,
        backbone: PreTrainedModel,
        num_labels: int,
        *,
        pooling: Pooling,
        dropout: float,
        task: str = "classification",
        loss_weights: torch.Tensor | None = None,
        loss_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            backbone,
            backbone.config.hidden_size,
            num_labels,
            dropout=dropout,
            task=task,
            loss_weights=loss_weights,
            loss_options=loss_options,
        )
        self.pooling: Pooling = pooling

    @classmethod
    def _load_backbone(cls, backbone_path: str, *, pretrained: bool) -> tuple[nn.Module, dict[str, Any]]:
        """A local directory, or a hub id where the deployment allows the hub."""
        if pretrained:
            # NOTE: transformers 5 loads weights in their stored dtype by default; training needs fp32 master weights.
            backbone = AutoModel.from_pretrained(backbone_path, dtype=torch.float32)
        else:
            config = AutoConfig.from_pretrained(backbone_path)
            backbone = AutoModel.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
        pooling = read_pooling(Path(backbone_path)) if Path(backbone_path).is_dir() else "cls"
        return backbone, {"pooling": pooling}

    @classmethod
    def _from_meta(cls, meta: dict[str, Any], checkpoint_dir: Path) -> TextClassifier:
        config = AutoConfig.from_pretrained(checkpoint_dir)
        backbone = AutoModel.from_config(config)  # type: ignore[no-untyped-call]
        return cls(
            backbone, meta["num_labels"], pooling=meta["pooling"], dropout=meta["dropout"],
            task=meta.get("task", "classification"),
        )

    def _save_backbone_meta(self, checkpoint_dir: Path) -> dict[str, Any]:
        self.backbone.config.save_pretrained(checkpoint_dir)
        return {"pooling": self.pooling, "backbone_config": self.backbone.config.to_dict()}

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
        return self.classify(self._features(hidden, attention_mask), labels)

    def _features(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """What the head reads: one pooled vector per text (the token model reads every token instead)."""
        return self._pool(hidden, attention_mask)

    def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        # NOTE: the clamp keeps an all-padding row finite, as sentence-transformers' own mean pooling does.
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
