"""Token-classification training data: stored sentences `{"tokens": [...], "tags": [...]}` (IOB2, checked at upload),
tokenized as words (is_split_into_words=True), each word's tag on its first sub-word and IGNORE_INDEX on the others
and on special tokens (`tagging.subword_labels`).

Long sentences are truncated at max_seq_length sub-words (no stride windows): the words past the limit are not
trained on, and evaluation reads them as `O` (`export.words`), so a truncated gold entity counts as missed. The
limit is the job's max_seq_length (default 128 sub-words, raise it for long sentences)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from tuneserve.engines.export.words import first_positions, gather_words
from tuneserve.engines.training.data import DatasetError, EncodedDataset
from tuneserve.tasks import Task
from tuneserve.tasks.tagging import subword_labels


@dataclass(frozen=True)
class TaggedExample:
    tokens: list[str]
    target: list[str]          # one IOB2 tag per token

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


class TaggedDataset(EncodedDataset):
    """Tokenized sentences, unpadded, with where each word's first sub-word sits (-1: truncated away)."""

    def __init__(self, features: list[dict[str, Any]], positions: list[list[int]]) -> None:
        super().__init__(features)
        self.positions = positions

    def row_logits(self, logits: np.ndarray) -> np.ndarray:
        """Per-word logits [N, W, L] of the model's per-token logits on these rows [N, T, L]."""
        return gather_words(logits, self.positions)


def read_tagged(path: Path, task: Task) -> list[TaggedExample]:
    examples = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            tokens = row.get("tokens") if isinstance(row, dict) else None
            if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
                raise DatasetError(f'{path.name} line {number}: expected {{"tokens": [str, ...], "tags": [str, ...]}}')
            try:
                tags = task.stored_target(row.get("tags"))
            except ValueError as error:
                raise DatasetError(f"{path.name} line {number}: {error}") from None
            if len(tags) != len(tokens):
                raise DatasetError(f"{path.name} line {number}: {len(tokens)} tokens but {len(tags)} tags")
            examples.append(TaggedExample(tokens, tags))
    if not examples:
        raise DatasetError(f"{path.name} has no sentences")
    return examples


def encode_tagged(
    examples: list[TaggedExample],
    tokenizer: PreTrainedTokenizerBase,
    labels: list[str],
    *,
    input_names: list[str],
    max_seq_length: int,
) -> TaggedDataset:
    index = {label: i for i, label in enumerate(labels)}
    encoded = tokenizer(
        [example.tokens for example in examples], is_split_into_words=True, truncation=True, max_length=max_seq_length
    )
    features: list[dict[str, Any]] = []
    positions: list[list[int]] = []
    for row, example in enumerate(examples):
        word_ids = encoded.word_ids(row)
        feature: dict[str, Any] = {name: encoded[name][row] for name in input_names}
        feature["labels"] = subword_labels([word_ids], [index[tag] for tag in example.target])[0]
        features.append(feature)
        positions.append(first_positions(word_ids, len(example.tokens)))
    return TaggedDataset(features, positions)
