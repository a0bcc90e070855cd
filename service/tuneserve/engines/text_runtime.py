"""The ONNX text runtime: texts (or, for a pair model, (text, text_pair) tuples: encoded together as a cross-encoder
reads them, or each text alone for a bi-encoder, `TaskParams.bi_encoder`) -> token ids -> the graph's logits -> the
task's served scores.

Each text (each side of a pair) is cut to `max_chars_per_token x max_seq_length` characters before it is tokenized:
the tokenizer's truncation keeps the first max_seq_length tokens but still tokenizes the whole text, so a
100,000-character text would cost 100,000 characters of work for the 128 tokens the model reads. A cross-encoder's
pair is truncated as the training pipeline's tokenizer call truncates it (longest side first, to max_seq_length tokens
together), a bi-encoder's texts each to max_seq_length tokens.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuneserve.engines.onnx_session import Head, RuntimeOptions, Session, inside
from tuneserve.engines.training.spec import ARTIFACTS, PAIR_INPUT_SUFFIX

log = logging.getLogger(__name__)

TextInput = str | tuple[str, str]   # a text, or (text, text_pair) for a pair model


@dataclass(frozen=True, slots=True)
class TextFeatures:
    ids: np.ndarray          # int64 token ids, [CLS] ... [SEP] (pairs: [CLS] text [SEP] pair [SEP]), truncated
    type_ids: np.ndarray     # int64 token type ids (pairs: 1 on the second text)
    second: TextFeatures | None = None   # a bi-encoder's: text_pair's own ids ([CLS] pair [SEP])

    @property
    def length(self) -> int:
        """What a batch pads to: the longer text's tokens for a bi-encoder."""
        return max(int(self.ids.shape[0]), self.second.length if self.second is not None else 0)

    @property
    def source(self) -> None:
        return None


class OnnxTextClassifier:
    modality = "text"

    def __init__(self, version_dir: Path, options: RuntimeOptions, variant: str = "fp32") -> None:
        prep = json.loads((version_dir / ARTIFACTS["preprocessing"]).read_text())
        head = Head.read(version_dir)
        self.variant = variant
        self.labels, self.task, self.params = head.labels, head.task, head.params
        self.text_pairs: bool = head.params.text_pairs
        self.max_seq_length: int = int(prep["max_seq_length"])
        self._input_names: list[str] = list(prep["input_names"])
        tokenizer_dir = inside(version_dir, prep.get("tokenizer", ARTIFACTS["tokenizer"]))
        max_chars = options.max_chars_per_token * self.max_seq_length
        self._encoder = _TokenEncoder(tokenizer_dir, self.max_seq_length, max_chars, separate=head.params.bi_encoder)
        self._session = Session(version_dir, variant, options)
        self.memory_bytes, self.provider = self._session.memory_bytes, self._session.provider
        self._warm_up()

    def encode(self, texts: Sequence[TextInput]) -> list[TextFeatures]:
        return self._encoder.encode(texts)

    def run(self, batch: Sequence[TextFeatures]) -> np.ndarray:
        """The task's served scores of a batch: [N, len(labels)] probabilities, or [N, 1] values."""
        return self.task.outputs(self._session.run(self._pad(batch)), self.params)

    def predict(self, texts: Sequence[TextInput]) -> np.ndarray:
        return self.run(self.encode(texts))

    def _pad(self, batch: Sequence[TextFeatures]) -> dict[str, np.ndarray]:
        arrays = self._padded(batch)
        if self.params.bi_encoder:
            seconds = [features.second for features in batch]
            assert all(second is not None for second in seconds)  # NOTE: a bi-encoder's encoder always sets it
            second = self._padded(seconds)  # type: ignore[arg-type]
            arrays |= {name + PAIR_INPUT_SUFFIX: array for name, array in second.items()}
        return {name: arrays[name] for name in self._input_names}

    def _padded(self, batch: Sequence[TextFeatures]) -> dict[str, np.ndarray]:
        """The first texts' ids of a batch padded to the longest of them (a bi-encoder's pair texts: on their own)."""
        longest = max(f.ids.shape[0] for f in batch)
        ids = np.full((len(batch), longest), self._encoder.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), longest), dtype=np.int64)
        types = np.zeros((len(batch), longest), dtype=np.int64)
        for row, features in enumerate(batch):
            length = features.ids.shape[0]
            ids[row, :length] = features.ids
            mask[row, :length] = 1
            types[row, :length] = features.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def _warm_up(self) -> None:
        # NOTE: a short batch of one and a full-length batch, so ORT has planned and allocated both extremes before
        # the first request arrives.
        started = time.perf_counter()
        short, long = "warm up", "warm up " * self.max_seq_length
        if self.text_pairs:
            self.predict([(short, short)])
            self.predict([(long, long)] * 4)
        else:
            self.predict([short])
            self.predict([long] * 4)
        log.info("%s warmed up on %s in %.0f ms", self.variant, self.provider, (time.perf_counter() - started) * 1e3)

    def close(self) -> None:
        self._session.close()


class _TokenEncoder:
    """Tokenizes exactly as the training pipeline's tokenizer call (truncation to max_seq_length), without padding.

    NOTE: calling a transformers tokenizer with truncation/padding arguments reconfigures its Rust tokenizer on every
    call, which fails ("Already borrowed") when threads share it. A private copy of the backend, configured once,
    is read-only afterwards and safe to call from any thread.
    """

    def __init__(self, tokenizer_dir: Path, max_length: int, max_chars: int, *, separate: bool = False) -> None:
        """separate: a bi-encoder's pairs, each text tokenized alone."""
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.pad_id: int = int(tokenizer.pad_token_id or 0)
        self._max_chars = max_chars
        self._separate = separate
        self._lock: threading.Lock | None = None
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:  # a tokenizer without a Rust backend: serialise calls instead
            self._tokenizer, self._lock, self._max_length = tokenizer, threading.Lock(), max_length
            return
        self._backend = backend.__class__.from_str(backend.to_str())
        # NOTE: the backend's default strategy, longest_first, is transformers' `truncation=True` for pairs too
        self._backend.enable_truncation(max_length)
        self._backend.no_padding()

    def encode(self, texts: Sequence[TextInput]) -> list[TextFeatures]:
        # NOTE: a prefix yields the same first max_length tokens as the whole text when the words before its last
        # (possibly cut) one hold that many: only texts averaging more than max_chars / max_length characters per
        # token (words of dozens of letters) are read shorter than the tokenizer's truncation alone would read them.
        # A pair keeps at most max_length tokens of either side, so each side is cut on its own.
        cut = [self._cut(text) for text in texts]
        if self._separate:
            pairs = [text for text in cut if isinstance(text, tuple)]
            if len(pairs) != len(cut):
                raise ValueError("a bi-encoder reads text pairs, not single texts")
            firsts = self._encode_texts([first for first, _ in pairs])
            seconds = self._encode_texts([second for _, second in pairs])
            return [TextFeatures(a.ids, a.type_ids, b) for a, b in zip(firsts, seconds, strict=True)]
        return self._encode_texts(cut)

    def _encode_texts(self, cut: list[TextInput]) -> list[TextFeatures]:
        if self._lock is not None:
            return self._encode_slow(cut)
        return [_features(e.ids, e.type_ids) for e in self._backend.encode_batch(cut)]

    def _cut(self, text: TextInput) -> TextInput:
        if isinstance(text, tuple):
            return text[0][: self._max_chars], text[1][: self._max_chars]
        return text[: self._max_chars]

    def _encode_slow(self, texts: list[TextInput]) -> list[TextFeatures]:
        assert self._lock is not None
        pairs = [t for t in texts if isinstance(t, tuple)]
        with self._lock:
            if pairs and len(pairs) == len(texts):
                out = self._tokenizer(
                    [a for a, _ in pairs], [b for _, b in pairs], truncation=True, max_length=self._max_length
                )
            elif pairs:
                raise ValueError("a batch mixes texts and text pairs")
            else:
                out = self._tokenizer(texts, truncation=True, max_length=self._max_length)
        types = out.get("token_type_ids") or [[0] * len(ids) for ids in out["input_ids"]]
        return [_features(ids, t) for ids, t in zip(out["input_ids"], types, strict=True)]


def _features(ids: Sequence[int], type_ids: Sequence[int]) -> TextFeatures:
    return TextFeatures(np.asarray(ids, dtype=np.int64), np.asarray(type_ids, dtype=np.int64))
