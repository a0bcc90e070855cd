"""The token-classification task's methods: entity figures against hand-computed ones (exact span and type), the
missed/spurious examples of a report on the stored rows Evaluate passes, per-sentence outcomes and the randomization
test, decode/open_inference to character offsets, target encoding, the loss (ignored positions, class weights) and
the export parity check (a flipped tag is reported, a near tie is not)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tuneserve.tasks import Source, TaskParams, get_task
from tuneserve.tasks.tagging import IGNORE_INDEX, split_words

TASK = get_task("token_classification")
LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
PARAMS = TaskParams(task="token_classification")
TRUE = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-LOC"]]
PREDICTED = [["B-PER", "I-PER", "O", "O"], ["B-PER", "B-LOC"]]
TOKENS = [["Ada", "Lovelace", "in", "Paris"], ["in", "Rome"]]


def one_hot(rows: list[list[str]], width: int = 0) -> np.ndarray:
    """Per-word scores [N, W, L]: probability 0.9 on each word's tag, zero rows past a sentence's end."""
    width = width or max(len(r) for r in rows)
    scores = np.zeros((len(rows), width, len(LABELS)), dtype=np.float32)
    for n, tags in enumerate(rows):
        for w, tag in enumerate(tags[:width]):
            scores[n, w] = 0.1 / (len(LABELS) - 1)
            scores[n, w, LABELS.index(tag)] = 0.9
    return scores


def test_report_matches_hand_computed_entity_figures() -> None:
    report = TASK.report(one_hot(PREDICTED), TRUE, LABELS, PARAMS)
    # gold: PER 0-2, LOC 3, LOC 1 (row 2); predicted: PER 0-2, PER 0 (row 2), LOC 1 (row 2): 2 exact of 3 and 3
    assert report.metrics["entity_precision"] == pytest.approx(2 / 3)
    assert report.metrics["entity_recall"] == pytest.approx(2 / 3)
    assert report.metrics["entity_f1"] == pytest.approx(2 / 3)
    assert report.metrics["token_accuracy"] == pytest.approx(4 / 6)
    per_type = {r.label: (r.precision, r.recall, r.support) for r in report.per_label}
    assert per_type == {"LOC": (1.0, 0.5, 2), "PER": (0.5, 1.0, 1)}
    assert report.confusion_labels == ["LOC", "PER", "O"]
    assert report.span_counts == {"missed": 1, "spurious": 1, "wrong_type": 0}
    assert report.num_unknown_labels == 0


def test_report_on_stored_rows_quotes_the_missed_and_spurious_words() -> None:
    stored = [{"tokens": t, "tags": g} for t, g in zip(TOKENS, TRUE, strict=True)]
    report = TASK.report(one_hot(PREDICTED), stored, LABELS, PARAMS)
    assert report.metrics["entity_f1"] == pytest.approx(2 / 3)
    [missed] = [e for e in report.span_errors if e.kind == "missed"]
    [spurious] = [e for e in report.span_errors if e.kind == "spurious"]
    assert (missed.sentence, missed.type, missed.start, missed.end, missed.text) == (0, "LOC", 3, 4, "Paris")
    assert (spurious.sentence, spurious.type, spurious.text) == (1, "PER", "in")


def test_words_past_the_scores_and_zero_rows_read_outside() -> None:
    scores = one_hot([["B-PER", "I-PER"]], width=3)          # the third word: a zero row
    predicted = TASK.predicted_tags(scores, [["B-PER", "I-PER", "B-LOC", "I-LOC"]], LABELS)
    assert predicted == [["B-PER", "I-PER", "O", "O"]]


def test_outcomes_count_exact_entities_per_sentence_and_the_test_is_randomization() -> None:
    outcomes = TASK.outcomes(one_hot(PREDICTED), TRUE, LABELS, PARAMS, LABELS)
    assert outcomes.tolist() == [[1, 0, 1], [1, 1, 0]]   # tp, fp, fn
    perfect = TASK.outcomes(one_hot(TRUE), TRUE, LABELS, PARAMS, LABELS)
    test = TASK.paired_test(perfect, outcomes)
    assert test.test == "randomization" and 0.0 < test.p_value <= 1.0
    assert (test.only_first_better, test.only_second_better, test.leader) == (2, 0, "first")


def test_decode_and_open_inference_answer_character_offsets() -> None:
    text = "Ada  Lovelace visited Zoë's Paris!"
    words = split_words(text)
    tags = ["O"] * len(words)
    tags[0], tags[1] = "B-PER", "I-PER"
    tags[[w for w, _, _ in words].index("Paris")] = "B-LOC"
    scores = one_hot([tags])[0]
    decoded = TASK.decode(scores, LABELS, PARAMS, 0, Source(text, list(words)))
    assert [(e["type"], e["text"]) for e in decoded.entities] == [("PER", "Ada  Lovelace"), ("LOC", "Paris")]
    assert all(text[e["start"]:e["end"]] == e["text"] for e in decoded.entities)
    assert decoded.entities[0]["score"] == pytest.approx(0.9)
    [tensor] = TASK.open_inference(scores[None], LABELS, PARAMS, [Source(text, list(words))])
    assert (tensor.name, tensor.datatype, tensor.shape) == ("entities", "BYTES", [1, 1])
    assert json.loads(tensor.data[0]) == decoded.entities
    with pytest.raises(ValueError, match="source"):
        TASK.decode(scores, LABELS, PARAMS, 0)


def test_targets_encode_with_ignored_padding_and_round_trip() -> None:
    encoded = TASK.encode_targets(TRUE, LABELS, PARAMS)
    assert encoded.tolist() == [[3, 4, 0, 1], [0, 1, IGNORE_INDEX, IGNORE_INDEX]]
    assert TASK.decode_targets(encoded, LABELS, PARAMS) == TRUE
    assert TASK.stored_target(["O", "B-PER"]) == ["O", "B-PER"]
    with pytest.raises(ValueError, match="tags"):
        TASK.stored_target("B-PER")


def test_loss_ignores_the_ignored_positions_and_weighs_rare_tags() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, len(LABELS), generator=generator)
    targets = torch.tensor([[3, IGNORE_INDEX, 4, 0, IGNORE_INDEX], [0, 1, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]])
    loss = TASK.loss(logits, targets, weights=None, options={})
    kept = targets != IGNORE_INDEX
    expected = torch.nn.functional.cross_entropy(logits[kept], targets[kept])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    changed = logits.clone()
    changed[~kept] = 100.0                                  # what the ignored sub-words say changes nothing
    assert TASK.loss(changed, targets, weights=None, options={}).item() == pytest.approx(loss.item(), rel=1e-6)
    weights = TASK.loss_weights([["O", "O", "O", "B-PER"], ["O", "O", "O", "O"]], LABELS)
    assert weights is not None and weights[LABELS.index("B-PER")] > weights[0] and weights[1] == 1.0


def test_parity_reports_a_flipped_tag_but_not_a_near_tie() -> None:
    reference = np.zeros((1, 3, len(LABELS)), dtype=np.float32)
    reference[0, :, 0] = 2.0
    flipped = reference.copy()
    flipped[0, 1, 3] = 3.0                                  # the second token's tag: O -> B-PER
    diff, message = TASK.parity(reference, flipped, PARAMS)
    assert diff == pytest.approx(3.0) and message == "1 tokens' tag differs"
    tie = reference.copy()
    tie[0, 2, 1] = 2.0 - 1e-6                               # a near tie in the reference
    moved = tie.copy()
    moved[0, 2, 1] = 2.0 + 1e-6
    diff, message = TASK.parity(tie, moved, PARAMS)
    assert diff < 1e-5 and message == ""
    assert TASK.parity(reference, reference + 1e-7, PARAMS)[1] == ""
