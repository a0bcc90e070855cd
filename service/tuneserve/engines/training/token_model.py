"""The token-classification model: the text backbone, dropout and a linear head applied to every sub-word's hidden
state (no pooling), so its raw outputs ("logits") are [batch, sequence, labels]. The state-dict names (`backbone`,
`dropout`, `head`) and the checkpoint files are `head.TransferClassifier`'s, like every other task model."""

from __future__ import annotations

from typing import Any

import torch
from transformers import DataCollatorForTokenClassification, PreTrainedTokenizerBase
from transformers.modeling_outputs import SequenceClassifierOutput

from tuneserve.engines.training.model import TextClassifier
from tuneserve.tasks.tagging import IGNORE_INDEX


class TokenClassifier(TextClassifier):
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
        return self.classify(hidden, labels)

    def collator(self, tokenizer: PreTrainedTokenizerBase | None) -> Any:
        """Pads each batch's inputs and its sub-word labels (with IGNORE_INDEX) to its longest sentence."""
        if tokenizer is None:
            raise ValueError("token classification pads its batches with the backbone's tokenizer")
        return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX)
