"""Token classification (named entities): a sentence of words per row, one IOB2 tag per word, a per-token softmax
head trained with cross-entropy on each word's first sub-word (`tagging.IGNORE_INDEX` elsewhere, class-weighted for
rare tags), entity-level metrics (seqeval, the CoNLL definition: `entity_metrics`) and the approximate randomization
test of entity F1 between two models.

Shapes. The head's raw outputs are per sub-word token, `[N, T, L]` (what the ONNX graph answers and what the Trainer
evaluates, against sub-word labels). Everything that judges a model on its rows (`report`, `metrics`, `outcomes`,
`decode`) takes per-*word* scores `[N, W, L]`: each word's probabilities read at its first sub-word, the rows padded
to the longest sentence; a word no sub-word reached (past the truncation limit) has an all-zero row and counts as
`O` (argmax 0, since `O` is label 0 of `tagging.iob2_labels`). The training pipeline and the int8 guard gather those
words (`engines.training.token_data.gather_words`); the serving runtime (`engines.token_runtime`) splits raw text into
words (`tagging.split_words`) and serves the same per-word scores, which `decode` and `open_inference` turn into
entities with character offsets into the input (`source`). Evaluate passes the stored rows {"tokens", "tags"} as
targets (`tags_of`); its report keeps examples of missed and spurious entities (`span_errors`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tuneserve.tasks.base import (
    Decoded,
    OutputTensor,
    PairedTest,
    Source,
    SpanError,
    Target,
    Task,
    TaskParams,
    TaskReport,
)
from tuneserve.tasks.entity_metrics import (
    entity_report,
    f1_of_counts,
    randomization_p,
    sentence_counts,
    tag_sequences,
)
from tuneserve.tasks.stats import leader
from tuneserve.tasks.tagging import (
    IGNORE_INDEX,
    OUTSIDE,
    entities,
    softmax,
    split_tag,
    word_tags,
)

if TYPE_CHECKING:
    import torch

# A top-two gap this small may fall either way between PyTorch and ONNX Runtime.
PARITY_MARGIN = 1e-4
MAX_EXAMPLES = 20   # missed and spurious entities a report keeps of each


def entity_types(labels: Sequence[str]) -> list[str]:
    """The entity types of an IOB2 label set, sorted."""
    return sorted({split_tag(label)[1] for label in labels if label != OUTSIDE})


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
        if not isinstance(value, list) or not value or not all(isinstance(tag, str) for tag in value):
            raise ValueError(f'"tags" must be a non-empty list of IOB2 tags, not {json.dumps(value)[:80]}')
        return list(value)

    def label_set(self, target: Target) -> list[str]:
        """The IOB2 labels of the entity types a sentence holds (B- and I- of each), so that a type seen only as
        single-word entities in one split still matches the other's I- tags."""
        kinds = sorted({split_tag(tag)[1] for tag in target if tag != OUTSIDE})
        return [f"{prefix}-{kind}" for kind in kinds for prefix in ("B", "I")]

    def read_target(self, value: Any, column: str, separator: str | None, check_label: Callable[[str], str]) -> Target:
        if separator is not None:
            raise ValueError("token classification is uploaded as CoNLL text or JSONL, not CSV")
        if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
            raise ValueError(f"field {column!r} must be a list of tags, one per token")
        return [check_label(tag) for tag in value]

    def encode_targets(self, targets: Sequence[Target], labels: Sequence[str], params: TaskParams) -> np.ndarray:
        """Word-level tag indices [N, W] (the longest sentence), IGNORE_INDEX past each sentence's end. Training
        labels are per sub-word instead: `engines.training.token_data` puts these on each word's first sub-word."""
        index = {label: i for i, label in enumerate(labels)}
        width = max((len(t) for t in targets), default=0)
        encoded = np.full((len(targets), width), IGNORE_INDEX, dtype=np.int64)
        for row, tags in enumerate(targets):
            encoded[row, : len(tags)] = [index[tag] for tag in tags]
        return encoded

    def decode_targets(self, encoded: np.ndarray, labels: Sequence[str], params: TaskParams) -> list[Target]:
        return [[labels[int(i)] for i in row if i != IGNORE_INDEX] for row in encoded]

    # -- training ---------------------------------------------------------------------------------------------------

    def loss_weights(self, targets: Sequence[Target], labels: Sequence[str]) -> np.ndarray | None:
        """Per-tag weights over the training words: the square root of the inverse ("balanced") frequency, so rare
        tags weigh more without letting a handful of words swamp `O`; a tag with no words gets 1."""
        counts = Counter(tag for tags in targets for tag in tags)
        total = sum(counts.values())
        weights = np.ones(len(labels), dtype=np.float32)
        present = [i for i, label in enumerate(labels) if counts[label] > 0]
        for i in present:
            weights[i] = np.sqrt(total / (len(present) * counts[labels[i]]))
        return weights

    def loss(
        self, logits: torch.Tensor, targets: torch.Tensor, *, weights: torch.Tensor | None, options: dict[str, Any]
    ) -> torch.Tensor:
        """Cross-entropy over the sub-words that carry a label (`IGNORE_INDEX` skipped), in fp32."""
        from torch.nn import functional

        return functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), weight=weights,
            ignore_index=IGNORE_INDEX, label_smoothing=float(options.get("label_smoothing", 0.0)),
        )

    # -- outputs ----------------------------------------------------------------------------------------------------

    def outputs(self, logits: np.ndarray, params: TaskParams) -> np.ndarray:
        """Probabilities over the last axis (tags), for token [N, T, L] or word [N, W, L] logits alike."""
        return softmax(logits).astype(np.float32)

    def predicted_tags(self, scores: np.ndarray, targets: Sequence[Target], labels: Sequence[str]) -> list[list[str]]:
        """Each sentence's predicted tag per word of its target from per-word scores [N, W, L]: argmax (an all-zero
        row, a word no sub-word reached, is "O"), and "O" for words past the scores' width."""
        predicted = []
        for row, target in zip(scores, targets, strict=True):
            size = len(tags_of(target))
            predicted.append(word_tags(row[:size], labels)[0] + [OUTSIDE] * max(0, size - len(row)))
        return predicted

    def decode(
        self, scores: np.ndarray, labels: Sequence[str], params: TaskParams, top_k: int, source: Source | None = None
    ) -> Decoded:
        """One row of per-word scores [W, L] (W may be padded past the row's words) as its entities with character
        offsets into `source.text` ({type, text, start, end, score}, `text == source.text[start:end]`)."""
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
        """BYTES `entities` [N, 1]: each row's entities as a JSON list of {type, text, start, end, score} (character
        offsets into its input)."""
        found = [
            json.dumps(self.decode(row, labels, params, 0, source).entities, ensure_ascii=False).encode()
            for row, source in zip(scores, sources, strict=True)
        ]
        return [OutputTensor("entities", "BYTES", [len(found), 1], found)]

    # -- evaluation -------------------------------------------------------------------------------------------------

    def report_labels(self, labels: Sequence[str]) -> list[str]:
        return entity_types(labels)

    def report(self, scores: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams) -> TaskReport:
        """Entity-level figures of per-word scores [N, W, L] against the rows' IOB2 tags (lists, or the stored rows
        {"tokens", "tags"} Evaluate passes: then the missed and spurious examples quote their words)."""
        true = [tags_of(t) for t in targets]
        predicted = self.predicted_tags(scores, targets, labels)
        tokens = [list(t["tokens"]) for t in targets] if targets and all(isinstance(t, dict) for t in targets) else None
        found = entity_report(true, predicted, tokens, types=entity_types(labels), max_examples=MAX_EXAMPLES)
        errors = [SpanError("missed", e.sentence, e.type, e.start, e.end, e.text, e.other) for e in found.missed]
        errors += [SpanError("spurious", e.sentence, e.type, e.start, e.end, e.text, e.other) for e in found.spurious]
        known = set(labels)
        return TaskReport(
            metrics=dict(found.metrics),
            per_label=list(found.per_type),
            confusion_labels=list(found.confusion_types),
            confusion=found.confusion,
            num_unknown_labels=sum(1 for tags in true if any(tag not in known for tag in tags)),
            span_errors=errors,
            span_counts={"missed": found.num_missed, "spurious": found.num_spurious,
                         "wrong_type": found.num_wrong_type},
        )

    def metrics_of_logits(
        self, logits: np.ndarray, encoded: np.ndarray, labels: Sequence[str], params: TaskParams
    ) -> dict[str, float]:
        """The Trainer's view: sub-word logits [N, T, L] against sub-word labels [N, T], read where a label is set
        (each word's first sub-word)."""
        true, predicted = tag_sequences(logits.argmax(axis=-1), encoded, labels)
        return entity_report(true, predicted, types=entity_types(labels)).metrics

    def outcomes(
        self, scores: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams,
        universe: Sequence[str],
    ) -> np.ndarray:
        """Per sentence: exact entities found, spurious and missed (int64 [N, 3]: tp, fp, fn)."""
        true = [tags_of(t) for t in targets]
        return sentence_counts(true, self.predicted_tags(scores, targets, labels))

    def paired_test(self, first: np.ndarray, second: np.ndarray) -> PairedTest:
        """Approximate randomization of the corpus entity F1 (`entity_metrics.randomization_p`); the counts are the
        sentences where one model's sentence F1 beats the other's."""
        mine, theirs = f1_of_counts(first), f1_of_counts(second)
        only_a, only_b = int(np.sum(mine > theirs)), int(np.sum(theirs > mine))
        total_first = float(f1_of_counts(first.sum(axis=0))) if len(first) else 0.0
        total_second = float(f1_of_counts(second.sum(axis=0))) if len(second) else 0.0
        p_value = randomization_p(first, second) if len(first) else 1.0
        return PairedTest("randomization", p_value, only_a, only_b, leader(total_first, total_second))

    # -- export -----------------------------------------------------------------------------------------------------

    def parity(self, reference: np.ndarray, exported: np.ndarray, params: TaskParams) -> tuple[float, str]:
        """Max |diff| of the token logits, and tokens whose tag (argmax) differs where the reference's top two are
        more than PARITY_MARGIN apart. Takes [K, L] (the real tokens of a batch) or [N, T, L]."""
        diff, _ = super().parity(reference, exported, params)
        if not reference.size:
            return diff, ""
        flat_ref = reference.reshape(-1, reference.shape[-1])
        flat_exp = exported.reshape(-1, exported.shape[-1])
        top = np.sort(flat_ref, axis=1)
        clear = top[:, -1] - top[:, -2] > PARITY_MARGIN if flat_ref.shape[1] > 1 else np.ones(len(flat_ref), bool)
        flips = int(np.sum((flat_ref.argmax(axis=1) != flat_exp.argmax(axis=1)) & clear))
        return diff, f"{flips} tokens' tag differs" if flips else ""


def tags_of(target: Target) -> list[str]:
    """A row's IOB2 tags: the target itself, or the "tags" of a stored row {"tokens", "tags"} (what Evaluate reads)."""
    return list(target["tags"]) if isinstance(target, dict) else list(target)
