"""The ONNX token-classification runtime: raw text -> words with character offsets (`tagging.split_words`), or
pre-split words (Evaluate's stored tokens) -> sub-word ids (the words tokenized with is_split_into_words, as training
tokenizes them) -> the graph's logits [N, T, L] -> softmax -> each word's probabilities at its first sub-word
(`tagging.word_probabilities`): served scores [N, W, L], W the longest row's words, zeros past a row's words.

Long inputs are truncated, not windowed: the model reads the first max_seq_length sub-words ([CLS] and [SEP]
included) and every word past them is answered "O" with score 0 (`tagging.word_tags`). The whole text is still split
into words, so offsets stay right; the text's length is bounded by limits.max_text_chars before it gets here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuneserve.engines.onnx_session import Head, RuntimeOptions, Session, inside
from tuneserve.engines.training.spec import ARTIFACTS
from tuneserve.tasks import Source
from tuneserve.tasks.tagging import split_words, word_probabilities

log = logging.getLogger(__name__)

WordsInput = str | list[str]   # raw text, or its words already split (Evaluate's stored tokens)


@dataclass(frozen=True, slots=True)
class TokenFeatures:
    ids: np.ndarray          # int64 sub-word ids, [CLS] ... [SEP], truncated to max_seq_length
    word_ids: list[int | None]   # the word of each sub-word (None: a special token)
    source: Source           # the text and its words with offsets

    @property
    def length(self) -> int:
        return int(self.ids.shape[0])


class OnnxTokenClassifier:
    modality = "text"

    def __init__(self, version_dir: Path, options: RuntimeOptions, variant: str = "fp32") -> None:
        prep = json.loads((version_dir / ARTIFACTS["preprocessing"]).read_text())
        head = Head.read(version_dir)
        self.variant = variant
        self.labels, self.task, self.params = head.labels, head.task, head.params
        self.max_seq_length: int = int(prep["max_seq_length"])
        self._input_names: list[str] = list(prep["input_names"])
        self._max_chars = options.max_chars_per_token * self.max_seq_length
        tokenizer_dir = inside(version_dir, prep.get("tokenizer", ARTIFACTS["tokenizer"]))
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self._pad_id = int(tokenizer.pad_token_id or 0)
        # NOTE: a private copy of the Rust backend configured once is read-only afterwards and safe from any thread
        # (see text_runtime._TokenEncoder)
        backend = tokenizer.backend_tokenizer
        self._backend = backend.__class__.from_str(backend.to_str())
        self._backend.enable_truncation(self.max_seq_length)
        self._backend.no_padding()
        self._session = Session(version_dir, variant, options)
        self.memory_bytes, self.provider = self._session.memory_bytes, self._session.provider
        self._warm_up()

    def encode(self, inputs: Sequence[WordsInput]) -> list[TokenFeatures]:
        sources = [_source(item) for item in inputs]
        # NOTE: words past what the model can read (max_chars_per_token x max_seq_length characters) are not
        # tokenized: truncation keeps the first max_seq_length sub-words anyway
        word_lists = [_readable(source, self._max_chars) for source in sources]
        encodings = self._backend.encode_batch(word_lists, is_pretokenized=True)
        return [
            TokenFeatures(np.asarray(e.ids, dtype=np.int64), list(e.word_ids), source)
            for e, source in zip(encodings, sources, strict=True)
        ]

    def run(self, batch: Sequence[TokenFeatures]) -> np.ndarray:
        """Word-level probabilities [N, W, L] of a batch, W its longest row's number of words."""
        probabilities = self.task.outputs(self._session.run(self._pad(batch)), self.params)
        width = max((len(f.source.words) for f in batch), default=0)
        scores = np.zeros((len(batch), width, len(self.labels)), dtype=np.float32)
        for row, features in enumerate(batch):
            words = len(features.source.words)
            scores[row, :words] = word_probabilities([features.word_ids], [probabilities[row, : features.length]], words)
        return scores

    def predict(self, inputs: Sequence[WordsInput]) -> np.ndarray:
        return self.run(self.encode(inputs))

    def _pad(self, batch: Sequence[TokenFeatures]) -> dict[str, np.ndarray]:
        longest = max(f.length for f in batch)
        ids = np.full((len(batch), longest), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), longest), dtype=np.int64)
        for row, features in enumerate(batch):
            ids[row, : features.length] = features.ids
            mask[row, : features.length] = 1
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return {name: arrays[name] for name in self._input_names}

    def _warm_up(self) -> None:
        started = time.perf_counter()
        self.predict(["warm up"])
        self.predict(["warm up " * self.max_seq_length] * 4)
        log.info("%s warmed up on %s in %.0f ms", self.variant, self.provider, (time.perf_counter() - started) * 1e3)

    def close(self) -> None:
        self._session.close()


def _source(item: WordsInput) -> Source:
    if isinstance(item, str):
        return Source(item, split_words(item))
    words, offset = [], 0
    for word in item:
        words.append((word, offset, offset + len(word)))
        offset += len(word) + 1
    return Source(" ".join(item), words)


def _readable(source: Source, max_chars: int) -> list[str]:
    words = [word for word, start, _ in source.words if start < max_chars]
    return words or [""]
