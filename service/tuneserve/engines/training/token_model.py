"""The token-classification model: the text backbone, dropout and a linear head applied to every sub-word's hidden
state (no pooling), so its raw outputs ("logits") are [batch, sequence, labels]. The state-dict names (`backbone`,
`dropout`, `head`) and the checkpoint files are `head.TransferClassifier`'s, like every other task model."""

from __future__ import annotations

from typing import Any

import torch
from transformers import DataCollatorForTokenClassification, PreTrainedTokenizerBase

from tuneserve.engines.training.model import TextClassifier
from tuneserve.tasks.tagging import IGNORE_INDEX


class TokenClassifier(TextClassifier):
    def _features(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Every sub-word's hidden state: the head classifies each token, so nothing is pooled."""
        return hidden

    def collator(self, tokenizer: PreTrainedTokenizerBase | None) -> Any:
        """Pads each batch's inputs and its sub-word labels (with IGNORE_INDEX) to its longest sentence."""
        if tokenizer is None:
            raise ValueError("token classification pads its batches with the backbone's tokenizer")
        return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX)
