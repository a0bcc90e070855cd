"""Entity-level metrics against hand-computed values, seqeval's figures against our own spans, and the paired test."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tuneserve.tasks.base import LabelReport
from tuneserve.tasks.entity_metrics import (
    EntityExample,
    entity_report,
    f1_of_counts,
    randomization_p,
    sentence_counts,
    tag_sequences,
)
from tuneserve.tasks.tagging import IGNORE_INDEX, spans

TOKENS = [
    ["Justin", "Bieber", "lives", "in", "New", "York", "City", "."],
    ["Acme", "Corp", "hired", "Zoë"],
    ["Paris", "is", "nice"],
]
TRUE = [
    ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "I-LOC", "O"],
    ["B-ORG", "I-ORG", "O", "B-PER"],
    ["B-LOC", "O", "O"],
]
PREDICTED = [
    ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O", "O"],     # New York City cut short
    ["B-LOC", "I-LOC", "O", "B-PER"],                            # Acme Corp: right span, wrong type
    ["O", "O", "B-MISC"],                                        # Paris missed, nice spurious
]


def test_figures_by_hand() -> None:
    report = entity_report(TRUE, PREDICTED, TOKENS, types=["PER", "LOC", "ORG", "MISC", "DATE"])
    # 5 gold entities, 5 predicted, 2 exact (the two PER): P = R = F1 = 2/5; tokens right: 7 + 2 + 1 of 15
    assert report.metrics == pytest.approx(
        {"entity_f1": 0.4, "entity_precision": 0.4, "entity_recall": 0.4, "token_accuracy": 10 / 15})
    assert report.per_type == [
        LabelReport("DATE", 0.0, 0.0, 0.0, 0),
        LabelReport("LOC", 0.0, 0.0, 0.0, 2),
        LabelReport("MISC", 0.0, 0.0, 0.0, 0),
        LabelReport("ORG", 0.0, 0.0, 0.0, 1),
        LabelReport("PER", 1.0, 1.0, 1.0, 2),
    ]


def test_confusion_and_examples_by_hand() -> None:
    report = entity_report(TRUE, PREDICTED, TOKENS)
    assert report.confusion_types == ["LOC", "MISC", "ORG", "PER", "O"]
    assert report.confusion == [
        [0, 0, 0, 0, 2],      # LOC: New York City (boundary) and Paris, no prediction on their exact spans
        [0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0],      # ORG predicted LOC on its span
        [0, 0, 0, 2, 0],
        [1, 1, 0, 0, 0],      # spurious: LOC New York, MISC nice
    ]
    assert (report.num_missed, report.num_spurious, report.num_wrong_type) == (2, 2, 1)
    assert report.missed == [
        EntityExample(0, "LOC", 4, 7, "New York City", "LOC 'New York'"),
        EntityExample(2, "LOC", 0, 1, "Paris", ""),
    ]
    assert report.spurious == [
        EntityExample(0, "LOC", 4, 6, "New York", "LOC 'New York City'"),
        EntityExample(2, "MISC", 2, 3, "nice", ""),
    ]
    short = entity_report(TRUE, PREDICTED, max_examples=1)
    assert short.missed == [EntityExample(0, "LOC", 4, 7, "", "LOC [4, 6)")] and short.num_missed == 2


def test_a_stray_predicted_inside_tag_counts_as_conlleval_counts_it() -> None:
    # default (conlleval) mode: I-PER after O begins an entity, which is right here; strict mode would drop it
    report = entity_report([["O", "B-PER", "I-PER"]], [["O", "I-PER", "I-PER"]])
    assert report.metrics["entity_f1"] == 1.0


def test_nothing_to_find_and_nothing_found_is_zero_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = entity_report([["O", "O"]], [["O", "O"]])
    assert report.metrics == {"entity_f1": 0.0, "entity_precision": 0.0, "entity_recall": 0.0, "token_accuracy": 1.0}
    assert report.confusion_types == ["O"] and report.confusion == [[0]]


def test_mismatched_sequences_are_refused() -> None:
    with pytest.raises(ValueError, match="differ"):
        entity_report([["O", "O"]], [["O"]])


def _random_tags(rng: np.random.Generator, count: int) -> list[list[str]]:
    choices = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    return [[choices[i] for i in rng.integers(0, len(choices), rng.integers(1, 15))] for _ in range(count)]


def test_seqevals_figures_are_those_of_our_own_spans() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        true = _random_tags(rng, 30)
        predicted = [[t if rng.random() < 0.7 else str(rng.choice(["O", "B-PER", "I-LOC"])) for t in row]
                     for row in true]
        report = entity_report(true, predicted)
        counts = sentence_counts(true, predicted).sum(axis=0)
        tp, fp, fn = (int(c) for c in counts)
        assert report.metrics["entity_f1"] == pytest.approx(float(f1_of_counts(counts)))
        assert report.metrics["entity_precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
        assert report.metrics["entity_recall"] == pytest.approx(tp / (tp + fn) if tp + fn else 0.0)
        assert sum(row.support for row in report.per_type) == sum(len(spans(row)) for row in true)
        diagonal = sum(report.confusion[i][i] for i in range(len(report.confusion) - 1))
        assert diagonal == tp and report.num_missed + report.num_wrong_type == fn


def test_tag_sequences_read_first_sub_words_only() -> None:
    labels = ["O", "B-PER", "I-PER"]
    predictions = np.array([[0, 1, 2, 2, 0], [0, 0, 1, 0, 0]])
    label_ids = np.array([[IGNORE_INDEX, 1, IGNORE_INDEX, 2, IGNORE_INDEX], [IGNORE_INDEX, 0, 1, IGNORE_INDEX, 0]])
    assert tag_sequences(predictions, label_ids, labels) == ([["B-PER", "I-PER"], ["O", "B-PER", "O"]],
                                                             [["B-PER", "I-PER"], ["O", "B-PER", "O"]])


def test_the_paired_test_of_two_models() -> None:
    rng = np.random.default_rng(3)
    true = _random_tags(rng, 60)
    good = sentence_counts(true, true)
    assert randomization_p(good, good, rounds=499) == 1.0
    bad = sentence_counts(true, [["O"] * len(row) for row in true])
    assert randomization_p(good, bad, rounds=999) == pytest.approx(1 / 1000)
    noisy = sentence_counts(true, [row if i % 10 else ["O"] * len(row) for i, row in enumerate(true)])
    assert randomization_p(good, noisy, rounds=999) > 0.05     # 6 sentences of 60 differ: not significant
    with pytest.raises(ValueError, match="same sentences"):
        randomization_p(good, good[:3])
