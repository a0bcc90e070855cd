"""The task model: a pretrained text backbone, the pooling it was pretrained with, dropout and a new linear head
(`head.TransferClassifier`, shared with the image model).

A pair model encodes (text, text_pair) as a cross-encoder (one sequence, the default) or, with pair_encoding "bi", as
a bi-encoder: each text goes through the same backbone alone and is pooled (u, v), as sentence-transformers trains
similarity models. The bi-encoder's regression head is an affine map of cosine(u, v), a 1 -> 1 linear layer that
`pair_encoder.fit_cosine_map` starts at the zero-shot cosines' least-squares fit; its classification head reads
[u, v, |u - v|] (SBERT's). Its inputs are both texts' ids: the second's names carry spec.PAIR_INPUT_SUFFIX.

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
from tuneserve.engines.training.pair_encoder import PairCollator, cosine
from tuneserve.engines.training.spec import PAIR_INPUT_SUFFIX

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
        pair_encoding: str = "cross",
    ) -> None:
        """pair_encoding "bi": a bi-encoder of text pairs (the module docstring); "cross": one text or sequence."""
        hidden = int(backbone.config.hidden_size)
        bi_features = 1 if task == "regression" else 3 * hidden  # cosine(u, v), or [u, v, |u - v|]
        super().__init__(
            backbone,
            bi_features if pair_encoding == "bi" else hidden,
            num_labels,
            dropout=dropout,
            task=task,
            loss_weights=loss_weights,
            loss_options=loss_options,
        )
        self.pooling: Pooling = pooling
        self.pair_encoding = pair_encoding

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
            task=meta.get("task", "classification"), pair_encoding=meta.get("pair_encoding", "cross"),
        )

    def _save_backbone_meta(self, checkpoint_dir: Path) -> dict[str, Any]:
        self.backbone.config.save_pretrained(checkpoint_dir)
        return {
            "pooling": self.pooling, "pair_encoding": self.pair_encoding,
            "backbone_config": self.backbone.config.to_dict(),
        }

    @property
    def bi_encoder(self) -> bool:
        return self.pair_encoding == "bi"

    def input_names(self, tokenizer: PreTrainedTokenizerBase) -> list[str]:
        """The inputs to feed, in forward() order; token types only where the tokenizer and the backbone use them (a
        bi-encoder: then the same names of the second text, with PAIR_INPUT_SUFFIX)."""
        names = ["input_ids", "attention_mask"]
        backbone_params = inspect.signature(self.backbone.forward).parameters
        if "token_type_ids" in tokenizer.model_input_names and "token_type_ids" in backbone_params:
            names.append("token_type_ids")
        return names + [name + PAIR_INPUT_SUFFIX for name in names] if self.bi_encoder else names

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        input_ids_pair: torch.Tensor | None = None,
        attention_mask_pair: torch.Tensor | None = None,
        token_type_ids_pair: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        hidden = self._encode(input_ids, attention_mask, token_type_ids)
        if not self.bi_encoder:
            return self.classify(self._features(hidden, attention_mask), labels)
        if input_ids_pair is None or attention_mask_pair is None:
            raise ValueError("a bi-encoder reads both texts: input_ids_pair and attention_mask_pair are missing")
        u = self._pool(hidden, attention_mask)
        v = self._pool(self._encode(input_ids_pair, attention_mask_pair, token_type_ids_pair), attention_mask_pair)
        if self.task.name == "regression":
            # NOTE: no dropout on the one cosine feature: it would scale the prediction itself at random.
            return self.classify(cosine(u, v).unsqueeze(-1), labels, dropout=False)
        return self.classify(torch.cat([u, v, (u - v).abs()], dim=-1), labels)

    def collator(self, tokenizer: PreTrainedTokenizerBase | None) -> Any:
        """A bi-encoder's batches pad each text's ids on their own."""
        if self.bi_encoder and tokenizer is not None:
            return PairCollator(tokenizer)
        return super().collator(tokenizer)

    def _encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        backbone_inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            backbone_inputs["token_type_ids"] = token_type_ids
        hidden: torch.Tensor = self.backbone(**backbone_inputs).last_hidden_state
        return hidden

    def _features(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """What the head reads: one pooled vector per text (the token model reads every token instead)."""
        return self._pool(hidden, attention_mask)

    def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One vector per text: the CLS state, or the mean of the real tokens' states."""
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        # NOTE: the clamp keeps an all-padding row finite, as sentence-transformers' own mean pooling does.
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
