"""max_seq_length from the data (`auto`): the worker tokenizes the training texts and keeps the length that covers
99% of them whole, so short texts are not padded to a fixed 128 and long ones are not cut more than they must be."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

AUTO_SEQ_LENGTH = 0         # max_seq_length's "from the data" value, resolved in the worker
MIN_SEQ_LENGTH = 32
MULTIPLE = 16
COVERAGE = 0.99           # the share of training texts kept whole


def seq_length_from(token_lengths: Sequence[int], cap: int) -> int:
    """The 99th percentile of token counts rounded up to a multiple of 16, within [32, cap].

    Batches are padded to their longest row, so a length past the typical text costs time only where a text is that
    long; the 95th percentile, used before, cut the end off 1 text in 20."""
    if not token_lengths:
        return min(cap, 128)
    ordered = sorted(token_lengths)
    p99 = ordered[min(len(ordered) - 1, math.ceil(COVERAGE * len(ordered)) - 1)]
    return max(min(MIN_SEQ_LENGTH, cap), min(cap, MULTIPLE * math.ceil(p99 / MULTIPLE)))


# NOTE: the percentile of a few thousand rows is as good as that of all of them, and tokenizing stays quick.
SAMPLE_ROWS = 5_000


def measure(tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None, cap: int) -> int:
    """seq_length_from the token counts (special tokens included) of the first SAMPLE_ROWS training texts (with their
    second texts for a pair model)."""
    texts = list(texts[:SAMPLE_ROWS])
    encoded = tokenizer(texts, list(pairs[:SAMPLE_ROWS]) if pairs is not None else None, truncation=False)
    return seq_length_from([len(ids) for ids in encoded["input_ids"]], cap)


def resolve_seq_length(
    requested: int, tokenizer: Any, config: Any, texts: Sequence[str], pairs: Sequence[str] | None, *, together: bool
) -> int:
    """The requested length, capped by what the backbone's position embeddings (`config`) and its tokenizer allow;
    auto (AUTO_SEQ_LENGTH): that cap, lowered to what the training texts need (`measure`), each pair's two texts
    counted together (`together`, a cross-encoder) or each text alone (a bi-encoder)."""
    positions = int(getattr(config, "max_position_embeddings", 512))
    cap = min(positions, int(tokenizer.model_max_length))
    if requested != AUTO_SEQ_LENGTH:
        return min(requested, cap)
    if pairs is not None and not together:
        texts, pairs = [*texts, *pairs], None
    return measure(tokenizer, texts, pairs, cap)
