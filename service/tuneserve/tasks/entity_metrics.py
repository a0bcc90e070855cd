"""Entity-level evaluation of token classification: precision, recall and F1 of exact spans and types (the CoNLL
definition, micro-averaged over entities), overall and per type, token accuracy, the confusion of entity types, and
examples of missed and spurious entities for the report; and a paired test of two models' entity F1.

The figures come from seqeval in its default mode, which is conlleval's: an `I-` tag that continues nothing begins
an entity instead of being dropped. Strict mode (IOB2 scheme) would drop such predicted entities, so a model would
score differently from the CoNLL script the literature quotes. The gold tags are IOB2 already (converted and repaired
at upload), where both modes agree; they differ only on ill-formed predictions. `tuneserve.tasks.tagging.spans`
follows the same definition, so the confusion and the examples below count the same entities as the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from seqeval.metrics import accuracy_score
from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

from tuneserve.tasks.base import LabelReport
from tuneserve.tasks.tagging import IGNORE_INDEX, OUTSIDE, Span, spans

ENTITY_METRICS = ("entity_f1", "entity_precision", "entity_recall", "token_accuracy")


@dataclass(frozen=True)
class EntityExample:
    """One entity of one side (gold for a missed one, predicted for a spurious one) the other side lacks."""

    sentence: int      # the sentence's index among those evaluated
    type: str
    start: int         # tokens[start:end]
    end: int
    text: str          # its tokens joined by spaces ("" when no tokens were given)
    other: str         # what the other side has over these tokens ("" = nothing): "PER 'Justin Bieber'", ...


@dataclass
class EntityReport:
    metrics: dict[str, float]                                      # ENTITY_METRICS by name
    per_type: list[LabelReport] = field(default_factory=list)      # by type; support = gold entities of the type
    confusion_types: list[str] = field(default_factory=list)       # the types, then "O" (no entity there)
    confusion: list[list[int]] = field(default_factory=list)       # rows gold, columns predicted, by exact span
    missed: list[EntityExample] = field(default_factory=list)      # gold spans no prediction has exactly (a sample)
    spurious: list[EntityExample] = field(default_factory=list)    # predicted spans no gold entity has exactly
    num_missed: int = 0
    num_spurious: int = 0
    num_wrong_type: int = 0                                        # exact span, other type


def entity_report(
    true: Sequence[Sequence[str]],
    predicted: Sequence[Sequence[str]],
    tokens: Sequence[Sequence[str]] | None = None,
    *,
    types: Sequence[str] = (),
    max_examples: int = 20,
) -> EntityReport:
    """Everything Evaluate reports for IOB2 tag sequences, one per sentence. `types`: entity types to list per type
    even where neither side has one (the model's types); `max_examples`: how many missed and spurious entities to
    keep (the first ones, in sentence order; the counts are complete)."""
    if len(true) != len(predicted) or any(len(t) != len(p) for t, p in zip(true, predicted, strict=True)):
        raise ValueError("true and predicted tags differ in the number of sentences or of tags in a sentence")
    y_true, y_pred = [list(t) for t in true], [list(p) for p in predicted]
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="micro", zero_division=0)
    metrics = {
        "entity_f1": float(f1), "entity_precision": float(precision), "entity_recall": float(recall),
        "token_accuracy": float(accuracy_score(y_true, y_pred)) if any(y_true) else 0.0,
    }
    report = EntityReport(metrics, per_type=_per_type(y_true, y_pred, types))
    _errors(report, y_true, y_pred, tokens, max_examples)
    return report


def _per_type(true: list[list[str]], predicted: list[list[str]], types: Sequence[str]) -> list[LabelReport]:
    precision, recall, f1, support = precision_recall_fscore_support(true, predicted, average=None, zero_division=0)
    # NOTE: seqeval lists the types found on either side, sorted; the same order is rebuilt here to name its rows
    found = sorted({kind for rows in (true, predicted) for row in rows for kind, _, _ in spans(row)})
    rows = {kind: LabelReport(kind, float(p), float(r), float(f), int(s))
            for kind, p, r, f, s in zip(found, precision, recall, f1, support, strict=True)}
    return [rows.get(kind, LabelReport(kind, 0.0, 0.0, 0.0, 0)) for kind in sorted(set(found) | set(types))]


def _errors(
    report: EntityReport, true: list[list[str]], predicted: list[list[str]],
    tokens: Sequence[Sequence[str]] | None, max_examples: int,
) -> None:
    found = sorted({kind for rows in (true, predicted) for row in rows for kind, _, _ in spans(row)})
    report.confusion_types = [*found, OUTSIDE]
    index = {kind: number for number, kind in enumerate(report.confusion_types)}
    confusion = np.zeros((len(index), len(index)), dtype=np.int64)
    for number, (gold_tags, predicted_tags) in enumerate(zip(true, predicted, strict=True)):
        words = tokens[number] if tokens is not None else None
        gold = {(start, end): kind for kind, start, end in spans(gold_tags)}
        guess = {(start, end): kind for kind, start, end in spans(predicted_tags)}
        for (start, end), kind in gold.items():
            other = guess.get((start, end), OUTSIDE)
            confusion[index[kind], index[other]] += 1
            if other == OUTSIDE:
                report.num_missed += 1
                if len(report.missed) < max_examples:
                    report.missed.append(_example(number, (kind, start, end), words, guess))
            elif other != kind:
                report.num_wrong_type += 1
        for (start, end), kind in guess.items():
            if (start, end) not in gold:
                confusion[index[OUTSIDE], index[kind]] += 1
                report.num_spurious += 1
                if len(report.spurious) < max_examples:
                    report.spurious.append(_example(number, (kind, start, end), words, gold))
    report.confusion = confusion.tolist()


def _example(
    sentence: int, span: Span, words: Sequence[str] | None, others: dict[tuple[int, int], str]
) -> EntityExample:
    kind, start, end = span
    overlapping = [(s, e, k) for (s, e), k in sorted(others.items()) if s < end and start < e]
    other = ", ".join(f"{k} {_text(words, s, e)!r}" if words is not None else f"{k} [{s}, {e})"
                      for s, e, k in overlapping)
    return EntityExample(sentence, kind, start, end, _text(words, start, end), other)


def _text(words: Sequence[str] | None, start: int, end: int) -> str:
    return " ".join(words[start:end]) if words is not None else ""


# -- the Trainer's view: label ids ----------------------------------------------------------------------------------

def tag_sequences(
    predictions: np.ndarray, label_ids: np.ndarray, labels: Sequence[str], ignore_index: int = IGNORE_INDEX
) -> tuple[list[list[str]], list[list[str]]]:
    """(true, predicted) tags per sequence of a Trainer evaluation: `predictions` [N, T] (argmax of the logits) and
    `label_ids` [N, T], read where the label is not `ignore_index` (the first sub-word of each word)."""
    true: list[list[str]] = []
    guess: list[list[str]] = []
    for predicted_row, label_row in zip(predictions, label_ids, strict=True):
        keep = label_row != ignore_index
        true.append([labels[i] for i in label_row[keep]])
        guess.append([labels[i] for i in predicted_row[keep]])
    return true, guess


# -- comparing two models -------------------------------------------------------------------------------------------

def sentence_counts(true: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> np.ndarray:
    """Per sentence: true positives, false positives and false negatives of exact entities, int64 [N, 3]."""
    counts = np.zeros((len(true), 3), dtype=np.int64)
    for number, (gold_tags, predicted_tags) in enumerate(zip(true, predicted, strict=True)):
        gold, guess = set(spans(gold_tags)), set(spans(predicted_tags))
        counts[number] = (len(gold & guess), len(guess - gold), len(gold - guess))
    return counts


def f1_of_counts(counts: np.ndarray) -> np.ndarray:
    """Micro F1 of summed (tp, fp, fn) along the last axis; 0 where nothing was found or expected."""
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    denominator = 2 * tp + fp + fn
    result: np.ndarray = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
    return result


def randomization_p(first: np.ndarray, second: np.ndarray, rounds: int = 9999, seed: int = 0) -> float:
    """Two-sided p-value that two models' entity F1 on the same sentences differ (approximate randomization, the
    usual test for corpus-level F1: each round swaps the two models' `sentence_counts` on random sentences).
    (hits + 1) / (rounds + 1), so never 0."""
    if first.shape != second.shape:
        raise ValueError("the two models were not evaluated on the same sentences")
    observed = abs(float(f1_of_counts(first.sum(axis=0)) - f1_of_counts(second.sum(axis=0))))
    difference = (first - second).astype(np.float64)
    total_first, total_second = first.sum(axis=0), second.sum(axis=0)
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    while done < rounds:
        batch = min(1000, rounds - done)
        swap = rng.random((batch, len(first))) < 0.5
        moved = swap @ difference
        gap = np.abs(f1_of_counts(total_first - moved) - f1_of_counts(total_second + moved))
        hits += int(np.count_nonzero(gap >= observed - 1e-12))
        done += batch
    return (hits + 1) / (rounds + 1)
