"""A real `Runtime` for core tests: a deterministic numpy classifier (mean-pooled word features times a fixed
matrix, softmax), with hooks to hold a batch, make it fail and record what ran."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tuneserve.tasks import TaskParams, get_task

FEATURES = 4


@dataclass(frozen=True)
class Words:
    text: str
    values: np.ndarray          # [length, FEATURES]

    @property
    def length(self) -> int:
        return int(self.values.shape[0])


class NumpyRuntime:
    labels = ["a", "b", "c"]
    task = get_task("classification")
    params = TaskParams()
    provider = "CPUExecutionProvider"
    max_seq_length = 64

    def __init__(self, *, memory_bytes: int = 1000, variant: str = "fp32") -> None:
        self.variant = variant
        self.memory_bytes = memory_bytes
        self.batches: list[list[str]] = []          # the texts of each run, in batch order
        self.threads: set[int] = set()
        self.closed = False
        self.running = threading.Event()            # set when a run starts
        self._gate = threading.Event()
        self._gate.set()
        self._weights = np.random.default_rng(0).normal(size=(FEATURES, len(self.labels))).astype(np.float32)

    def hold(self) -> None:
        """Runs wait (on their thread) until `release()`."""
        self._gate.clear()
        self.running.clear()

    def release(self) -> None:
        self._gate.set()

    def encode(self, texts: Sequence[str]) -> list[Words]:
        return [Words(t, _word_features(t)[: self.max_seq_length]) for t in texts]

    def run(self, batch: Sequence[Words]) -> np.ndarray:
        self.threads.add(threading.get_ident())
        self.batches.append([w.text for w in batch])
        self.running.set()
        if not self._gate.wait(10):
            raise TimeoutError("the test never released the runtime")
        if any("boom" in w.text for w in batch):
            raise RuntimeError("boom")
        longest = max(w.length for w in batch)
        padded = np.zeros((len(batch), longest, FEATURES), dtype=np.float32)
        mask = np.zeros((len(batch), longest, 1), dtype=np.float32)
        for row, words in enumerate(batch):
            padded[row, : words.length] = words.values
            mask[row, : words.length] = 1
        pooled = (padded * mask).sum(axis=1) / mask.sum(axis=1)
        logits = pooled @ self._weights
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.run(self.encode(texts))

    def close(self) -> None:
        self.closed = True


def _word_features(text: str) -> np.ndarray:
    words = text.split() or [""]
    return np.array(
        [[len(w), sum(map(ord, w)) % 17, w.count("a"), 1.0] for w in words], dtype=np.float32
    ) / 10


def words(n: int, tag: str = "w") -> str:
    """A text of `n` words (n tokens for NumpyRuntime)."""
    return " ".join(f"{tag}{i}" for i in range(n))
