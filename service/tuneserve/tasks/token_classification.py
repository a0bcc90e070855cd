"""Token classification (named entities): one IOB2 tag per word (`tuneserve.tasks.tagging`: labels "O" first, then
B-/I- of each type). The head answers per sub-word token ([N, T, L] logits); the runtime reads words, keeps each
word's probabilities at its first sub-word (`tagging.word_probabilities`) and serves word-level scores [N, W, L]
(zeros for a word past the truncation limit: "O" with score 0). Predict decodes a row into entities with character
offsets into the input (`tagging.entities`); Evaluate scores exact entity spans with seqeval
(`tuneserve.tasks.entity_metrics`); two models are compared by approximate randomization on entity F1.

Training (the loss on first sub-words, class weighting, windows) is the training branch's (issue 14, 14a); until it
lands, the training methods refuse with FailedPrecondition.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tuneserve.errors import FailedPrecondition
from tuneserve.tasks import entity_metrics
from tuneserve.tasks.base import (
    Decoded,
    LabelReport,
    OutputTensor,
    PairedTest,
    Source,
    SpanError,
    Target,
    Task,
    TaskParams,
    TaskReport,
)
from tuneserve.tasks.stats import leader
from tuneserve.tasks.tagging import OUTSIDE, entities, softmax, split_tag, word_tags

if TYPE_CHECKING:
    import torch

MAX_EXAMPLES = 20   # missed and spurious entities a report keeps of each


class TokenClassification(Task):
    name = "token_classification"
    target_field = "tags"
    default_metric = "entity_f1"
    metrics_for_best = ("entity_f1", "entity_precision", "entity_recall", "token_accuracy", "loss")
    guard_metric = "entity_f1"
    fit_metric = "entity_f1"
    min_labels = 1
    per_token = True

    # -- data -------------------------------------------------------------------------------------------------------

    def stored_target(self, value: Any) -> Target:
        if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
            raise ValueError(f'"tags" must be a list of IOB2 tags, not {json.dumps(value)[:80]}')
        return list(value)

    def label_set(self, target: Target) -> list[str]:
        return sorted(set(tags_of(target)))

    def read_target(self, value: Any, column: str, separator: str | None, check_label: Callable[[str], str]) -> Target:
        if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
            raise ValueError(f"field {column!r} must be a list of tags such as [\"B-PER\", \"O\"]")
        return [check_label(tag) for tag in value]

    def encode_targets(self, targets: Sequence[Target], labels: Sequence[str], params: TaskParams) -> np.ndarray:
        raise FailedPrecondition("training token classification is not available in this build yet")

    def decode_targets(self, encoded: np.ndarray, labels: Sequence[str], params: TaskParams) -> list[Target]:
        raise FailedPrecondition("training token classification is not available in this build yet")

    def loss(
        self, logits: torch.Tensor, targets: torch.Tensor, *, weights: torch.Tensor | None, options: dict[str, Any]
    ) -> torch.Tensor:
        raise FailedPrecondition("training token classification is not available in this build yet")

    # -- outputs ----------------------------------------------------------------------------------------------------

    def outputs(self, logits: np.ndarray, params: TaskParams) -> np.ndarray:
        """Per sub-word probabilities [N, T, L] (softmax over the tags)."""
        return softmax(logits).astype(np.float32)

    def decode(
        self, scores: np.ndarray, labels: Sequence[str], params: TaskParams, top_k: int, source: Source | None = None
    ) -> Decoded:
        """The entities of one row of word-level scores [W, L] (W may be padded past the row's words)."""
        if source is None:
            raise ValueError("token classification decodes against the input's words (source)")
        tags, word_scores = word_tags(scores[: len(source.words)], labels)
        found = entities(source.words, tags, word_scores, source.text)
        return Decoded(entities=[dict(entity) for entity in found])

    def output_names(self) -> list[tuple[str, str, int]]:
        return [("entities", "BYTES", 1)]

    def open_inference(
        self, scores: np.ndarray, labels: Sequence[str], params: TaskParams, sources: Sequence[Source | None] = (),
    ) -> list[OutputTensor]:
        """BYTES `entities` [N, 1]: each a JSON list of {type, text, start, end, score}."""
        found = [
            json.dumps(self.decode(row, labels, params, 0, source).entities, ensure_ascii=False).encode()
            for row, source in zip(scores, sources, strict=True)
        ]
        return [OutputTensor("entities", "BYTES", [len(found), 1], found)]

    # -- evaluation -------------------------------------------------------------------------------------------------

    def report(self, scores: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams) -> TaskReport:
        """Entity-level figures of word-level scores [N, W, L] against the rows' IOB2 tags."""
        true = [tags_of(t) for t in targets]
        predicted = self.predicted_tags(scores, targets, labels)
        types = sorted({split_tag(label)[1] for label in labels if label != OUTSIDE})
        tokens = [t["tokens"] for t in targets] if all(isinstance(t, dict) for t in targets) else None
        found = entity_metrics.entity_report(true, predicted, tokens, types=types, max_examples=MAX_EXAMPLES)
        errors = [SpanError("missed", e.sentence, e.type, e.start, e.end, e.text, e.other) for e in found.missed]
        errors += [SpanError("spurious", e.sentence, e.type, e.start, e.end, e.text, e.other) for e in found.spurious]
        return TaskReport(
            metrics=dict(found.metrics),
            per_label=[LabelReport(r.label, r.precision, r.recall, r.f1, r.support) for r in found.per_type],
            confusion_labels=list(found.confusion_types), confusion=found.confusion,
            num_unknown_labels=sum(1 for t in true if set(t) - set(labels)),
            span_errors=errors,
            span_counts={"missed": found.num_missed, "spurious": found.num_spurious,
                         "wrong_type": found.num_wrong_type},
        )

    def predicted_tags(self, scores: np.ndarray, targets: Sequence[Target], labels: Sequence[str]) -> list[list[str]]:
        """Each row's predicted tag per word of its target (a word the model did not reach is "O")."""
        predicted = []
        for row, target in zip(scores, targets, strict=True):
            size = len(tags_of(target))
            predicted.append(word_tags(row[:size], labels)[0] + [OUTSIDE] * max(0, size - len(row)))
        return predicted

    def outcomes(
        self, scores: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams,
        universe: Sequence[str],
    ) -> np.ndarray:
        """Per sentence: true positives, false positives, false negatives of exact entities, int64 [N, 3]."""
        true = [tags_of(t) for t in targets]
        return entity_metrics.sentence_counts(true, self.predicted_tags(scores, targets, labels))

    def paired_test(self, first: np.ndarray, second: np.ndarray) -> PairedTest:
        """Approximate randomization on entity F1; the counts are sentences where one model's F1 is higher."""
        f1_first, f1_second = entity_metrics.f1_of_counts(first), entity_metrics.f1_of_counts(second)
        total_first = float(entity_metrics.f1_of_counts(first.sum(axis=0)))
        total_second = float(entity_metrics.f1_of_counts(second.sum(axis=0)))
        return PairedTest(
            "randomization", entity_metrics.randomization_p(first, second),
            int(np.sum(f1_first > f1_second)), int(np.sum(f1_second > f1_first)), leader(total_first, total_second),
        )

    def parity(self, reference: np.ndarray, exported: np.ndarray, params: TaskParams) -> tuple[float, str]:
        diff, _ = super().parity(reference, exported, params)
        flips = int(np.sum(np.argmax(reference, axis=-1) != np.argmax(exported, axis=-1)))
        return diff, f"{flips} token tags differ" if flips else ""


def tags_of(target: Target) -> list[str]:
    """A row's IOB2 tags: the target itself, or the "tags" of a stored row {"tokens", "tags"} (what Evaluate reads)."""
    return list(target["tags"]) if isinstance(target, dict) else list(target)
