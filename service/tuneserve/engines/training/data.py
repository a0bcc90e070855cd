"""Training data: JSONL rows {"text", "label"}, the validation split, label indices and tokenization."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase


class DatasetError(ValueError):
    """The data cannot train the requested model; the message says what is wrong with it."""


@dataclass(frozen=True)
class Example:
    text: str
    label: str


class Labelled(Protocol):
    @property
    def label(self) -> str: ...


E = TypeVar("E", bound=Labelled)  # a text Example or an image example (vision_data.ImageExample)


@dataclass(frozen=True)
class Splits(Generic[E]):
    train: list[E]
    validation: list[E]


class EncodedDataset(Dataset[dict[str, list[int] | int]]):
    """Tokenized examples, unpadded: DataCollatorWithPadding pads each batch to its longest row."""

    def __init__(self, features: list[dict[str, list[int] | int]]) -> None:
        self._features = features

    def __len__(self) -> int:
        return len(self._features)

    def __getitem__(self, index: int) -> dict[str, list[int] | int]:
        return self._features[index]


def read_rows(path: Path, field: str, make: Callable[[str, str], E], *, value: str = "str") -> list[E]:
    """The rows {field: str, "label": ...} of a JSONL file as make(row[field], label) (`value` shows the field's shape
    in the error message). make raises DatasetError for a value it refuses; the message gains the file and line."""
    examples = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row.get(field), str) or row.get("label") is None:
                raise DatasetError(f'{path.name} line {number}: expected {{"{field}": {value}, "label": ...}}')
            try:
                examples.append(make(row[field], str(row["label"])))
            except DatasetError as error:
                raise DatasetError(f"{path.name} line {number}: {error}") from None
    if not examples:
        raise DatasetError(f"{path.name} has no rows")
    return examples


def read_examples(path: Path) -> list[Example]:
    return read_rows(path, "text", Example)


def make_splits(
    train: list[E], validation: list[E] | None, labels: list[str], *, fraction: float, seed: int
) -> Splits[E]:
    """Check labels against the head's label order, and split off a stratified validation set when none is given."""
    _check_labels(train, set(labels), "training", "the job's labels")
    if validation is None:
        return _stratified_split(train, fraction, seed)
    _check_labels(validation, {example.label for example in train}, "validation", "the training data")
    return Splits(train=train, validation=validation)


def class_counts(examples: Sequence[Labelled], labels: list[str]) -> list[int]:
    counts = Counter(example.label for example in examples)
    return [counts[label] for label in labels]


def encode(
    examples: list[Example],
    tokenizer: PreTrainedTokenizerBase,
    labels: list[str],
    *,
    input_names: list[str],
    max_seq_length: int,
) -> EncodedDataset:
    index = {label: i for i, label in enumerate(labels)}
    encoded = tokenizer([example.text for example in examples], truncation=True, max_length=max_seq_length)
    features: list[dict[str, list[int] | int]] = []
    for row, example in enumerate(examples):
        feature: dict[str, list[int] | int] = {name: encoded[name][row] for name in input_names}
        feature["labels"] = index[example.label]
        features.append(feature)
    return EncodedDataset(features)


def _check_labels(examples: Sequence[Labelled], known: set[str], what: str, against: str) -> None:
    unknown = sorted({example.label for example in examples} - known)
    if unknown:
        raise DatasetError(f"{what} labels {unknown} do not occur in {against} {sorted(known)}")


def _stratified_split(examples: list[E], fraction: float, seed: int) -> Splits[E]:
    try:
        train, validation = train_test_split(
            examples, test_size=fraction, stratify=[e.label for e in examples], random_state=seed
        )
    except ValueError as error:
        # NOTE: sklearn refuses a stratified split when a class has a single row or the validation set would be
        # smaller than the number of classes; say what the user can change.
        raise DatasetError(
            f"cannot split {len(examples)} rows into a stratified validation set of {fraction:.0%}: {error}; "
            "add rows to the rare labels, raise validation_fraction or give a validation dataset"
        ) from error
    return Splits(train=list(train), validation=list(validation))
