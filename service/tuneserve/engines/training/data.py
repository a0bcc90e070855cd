"""Training data: the stored JSONL rows of every task, the validation split, target encoding and tokenization.

A row is {"text": str, TARGET[, "text_pair": str]} (or {"image": ..., TARGET} for images), TARGET being the task's
`target_field`: "label" (classification), "labels" (multi-label, a list) or "target" (regression, a number). The task
(`tuneserve.tasks`) checks each target, says what the validation split keeps in proportion and encodes the targets
its loss takes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from tuneserve.engines.training.spec import PAIR_INPUT_SUFFIX
from tuneserve.tasks import Task, TaskParams


class DatasetError(ValueError):
    """The data cannot train the requested model; the message says what is wrong with it."""


@dataclass(frozen=True)
class Example:
    text: str
    target: Any                 # a label, a list of labels or a number (the task's target)
    text_pair: str = ""         # the second text of a pair model's row


class Targeted(Protocol):
    @property
    def target(self) -> Any: ...


E = TypeVar("E", bound=Targeted)  # a text Example or an image example (vision_data.ImageExample)


@dataclass(frozen=True)
class Splits(Generic[E]):
    train: list[E]
    validation: list[E]


class EncodedDataset(Dataset[dict[str, Any]]):
    """Tokenized examples, unpadded: DataCollatorWithPadding pads each batch to its longest row."""

    def __init__(self, features: list[dict[str, Any]]) -> None:
        self._features = features

    def __len__(self) -> int:
        return len(self._features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._features[index]

    def row_logits(self, logits: np.ndarray) -> np.ndarray:
        """The model's outputs on these rows as the task judges a row (token classification: per word)."""
        return logits


def read_rows(
    path: Path, field: str, make: Callable[[dict[str, Any], Any], E], task: Task, *, value: str = "str",
    pair: bool = False,
) -> list[E]:
    """The rows {field: str, task.target_field: ...[, "text_pair": str]} of a JSONL file as make(row, target) (`value`
    shows the field's shape in the error message). make raises DatasetError for a value it refuses; the message gains
    the file and line."""
    target_field = task.target_field
    second = '"text_pair": str, ' if pair else ""
    shape = f'{{"{field}": {value}, {second}"{target_field}": ...}}'
    examples = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if (
                not isinstance(row, dict) or not isinstance(row.get(field), str) or row.get(target_field) is None
                or (pair and not isinstance(row.get("text_pair"), str))
            ):
                raise DatasetError(f"{path.name} line {number}: expected {shape}")
            try:
                examples.append(make(row, task.stored_target(row[target_field])))
            except (DatasetError, ValueError) as error:
                raise DatasetError(f"{path.name} line {number}: {error}") from None
    if not examples:
        raise DatasetError(f"{path.name} has no rows")
    return examples


def read_examples(path: Path, task: Task, *, pairs: bool = False) -> list[Example]:
    def make(row: dict[str, Any], target: Any) -> Example:
        return Example(row["text"], target, row["text_pair"] if pairs else "")

    return read_rows(path, "text", make, task, pair=pairs)


def make_splits(
    train: list[E], validation: list[E] | None, labels: list[str], task: Task, *, fraction: float, seed: int
) -> Splits[E]:
    """Check labels against the head's label order, and split off a validation set when none is given (stratified by
    the task's `split_strata`, a plain shuffle where it has none)."""
    _check_labels(train, set(labels), task, "training", "the job's labels")
    if validation is None:
        return _split(train, task, fraction, seed)
    known = {label for example in train for label in task.label_set(example.target)}
    _check_labels(validation, known, task, "validation", "the training data")
    return Splits(train=train, validation=validation)


def targets(examples: Sequence[Targeted]) -> list[Any]:
    return [example.target for example in examples]


def encode(
    examples: list[Example],
    tokenizer: PreTrainedTokenizerBase,
    labels: list[str],
    *,
    task: Task,
    params: TaskParams,
    input_names: list[str],
    max_seq_length: int,
) -> EncodedDataset:
    """Token ids and the encoded target of each example; a cross-encoder's pairs are encoded as one sequence
    ([CLS] text [SEP] text_pair [SEP]), truncated longest side first, a bi-encoder's each text alone (the second's
    input names ending in PAIR_INPUT_SUFFIX)."""
    encoded_targets = task.encode_targets(targets(examples), labels, params).tolist()
    texts = [example.text for example in examples]
    pairs = [example.text_pair for example in examples]
    if params.bi_encoder:
        first = tokenizer(texts, truncation=True, max_length=max_seq_length)
        second = tokenizer(pairs, truncation=True, max_length=max_seq_length)
    elif params.text_pairs:
        first = second = tokenizer(texts, pairs, truncation=True, max_length=max_seq_length)
    else:
        first = second = tokenizer(texts, truncation=True, max_length=max_seq_length)
    features: list[dict[str, Any]] = []
    for row in range(len(examples)):
        feature: dict[str, Any] = {
            name: second[name.removesuffix(PAIR_INPUT_SUFFIX)][row] if name.endswith(PAIR_INPUT_SUFFIX)
            else first[name][row]
            for name in input_names
        }
        feature["labels"] = encoded_targets[row]
        features.append(feature)
    return EncodedDataset(features)


def _check_labels(examples: Sequence[Targeted], known: set[str], task: Task, what: str, against: str) -> None:
    unknown = sorted({label for example in examples for label in task.label_set(example.target)} - known)
    if unknown:
        raise DatasetError(f"{what} labels {unknown} do not occur in {against} {sorted(known)}")


def _split(examples: list[E], task: Task, fraction: float, seed: int) -> Splits[E]:
    validation_rows = math.ceil(fraction * len(examples))
    stratify = task.split_strata(targets(examples), min(validation_rows, len(examples) - validation_rows))
    try:
        train, validation = train_test_split(examples, test_size=fraction, stratify=stratify, random_state=seed)
    except ValueError as error:
        # NOTE: sklearn refuses a stratified split when a class has a single row or the validation set would be
        # smaller than the number of classes; say what the user can change.
        kind = "stratified " if stratify else ""
        raise DatasetError(
            f"cannot split {len(examples)} rows into a {kind}validation set of {fraction:.0%}: {error}; "
            "add rows to the rare labels, raise validation_fraction or give a validation dataset"
        ) from error
    return Splits(train=list(train), validation=list(validation))
