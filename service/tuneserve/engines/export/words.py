"""Per-word views of per-token outputs (token classification): where each word's first sub-word sits in a tokenized
sentence, and the head's raw outputs gathered there, the rows padded to the longest sentence.

Long sentences are truncated at the model's max_seq_length (no stride windows): a word past the limit has no
position (-1) and its gathered row is `UNREACHED_LOGIT` everywhere but `O` (label 0), so it reads as `O`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tuneserve.tasks.tagging import WordIds, first_subwords

UNREACHED_LOGIT = -1e4


def first_positions(word_ids: WordIds, num_words: int) -> list[int]:
    """The position of each word's first sub-word in one tokenized sentence, -1 for a word truncation cut off."""
    positions = [-1] * num_words
    for position, (word, first) in enumerate(zip(word_ids, first_subwords([word_ids])[0], strict=True)):
        if first and word is not None and word < num_words:
            positions[word] = position
    return positions


def gather_words(logits: np.ndarray, positions: Sequence[Sequence[int]]) -> np.ndarray:
    """Per-word rows [N, W, L] (W: the longest sentence) of per-token outputs [N, T, L] at `positions` (one list per
    sentence, `first_positions`); unreached words and padding read as O."""
    width = max((len(p) for p in positions), default=0)
    out = np.full((len(positions), width, logits.shape[-1]), UNREACHED_LOGIT, dtype=np.float32)
    out[:, :, 0] = 0.0
    for row, sentence in enumerate(positions):
        for word, position in enumerate(sentence):
            if 0 <= position < logits.shape[1]:
                out[row, word] = logits[row, position]
    return out


def concat_words(batches: Sequence[np.ndarray]) -> np.ndarray:
    """Per-word batches [B, W_b, L] as one array, padded (read as O) to the widest."""
    width = max(batch.shape[1] for batch in batches)
    padded = []
    for batch in batches:
        pad = np.full((batch.shape[0], width - batch.shape[1], batch.shape[2]), UNREACHED_LOGIT, dtype=np.float32)
        pad[:, :, 0] = 0.0
        padded.append(np.concatenate([batch.astype(np.float32), pad], axis=1))
    return np.concatenate(padded)
