"""ONNX Runtime sessions for exported classifiers: the `Runtime` contract and its ONNX Runtime implementation.

A runtime is loaded from a model version directory (see `tuneserve.engines.training.spec.ARTIFACTS`), tokenizes
text exactly as training did, and returns class probabilities. `predict` is blocking: callers run it off the event
loop (ONNX Runtime releases the GIL while it computes).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeOptions:
    intra_op_threads: int
    providers: tuple[str, ...] = ("CUDAExecutionProvider", "CPUExecutionProvider")


class Runtime(Protocol):
    labels: list[str]
    provider: str
    max_seq_length: int

    def predict(self, texts: list[str]) -> np.ndarray:
        """Class probabilities, shape [len(texts), len(labels)], float32."""
        ...

    def close(self) -> None: ...


class OnnxTextClassifier:
    def __init__(self, version_dir: Path, options: RuntimeOptions) -> None:
        from transformers import AutoTokenizer

        prep = json.loads((version_dir / "preprocessing.json").read_text())
        self.labels: list[str] = json.loads((version_dir / "labels.json").read_text())["labels"]
        self.max_seq_length: int = int(prep["max_seq_length"])
        self._input_names: list[str] = list(prep["input_names"])
        self._tokenizer = AutoTokenizer.from_pretrained(version_dir / prep.get("tokenizer", "tokenizer"))
        self._session = ort.InferenceSession(
            str(version_dir / "model.onnx"), sess_options=_session_options(options),
            providers=_usable_providers(options.providers),
        )
        # NOTE: onnxruntime-gpu lists CUDA even where it silently falls back; the session says what it really uses
        self.provider: str = self._session.get_providers()[0]
        self._warm_up()

    def predict(self, texts: list[str]) -> np.ndarray:
        encoded = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="np"
        )
        feeds = {name: encoded[name].astype(np.int64) for name in self._input_names}
        if self.provider == "CUDAExecutionProvider":
            logits = self._run_io_binding(feeds)
        else:
            logits = self._session.run(["logits"], feeds)[0]
        return _softmax(logits)

    def _run_io_binding(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        # NOTE: binds inputs once on the GPU and lets ORT allocate the output there, avoiding the extra copies
        # session.run makes; the logits (N x C floats) come back to the host.
        binding = self._session.io_binding()
        for name, array in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0))
        binding.bind_output("logits", "cuda")
        self._session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def _warm_up(self) -> None:
        started = time.perf_counter()
        for batch in (["warm up"], ["warm up"] * 8):
            self.predict(batch)
        log.info("warmed up on %s in %.0f ms", self.provider, (time.perf_counter() - started) * 1e3)

    def close(self) -> None:
        del self._session


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


def _usable_providers(preferred: tuple[str, ...]) -> list[str]:
    available = set(ort.get_available_providers())
    chosen = [p for p in preferred if p in available]
    return chosen or ["CPUExecutionProvider"]


def _session_options(options: RuntimeOptions) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return so


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted, dtype=np.float32)
    return exp / exp.sum(axis=1, keepdims=True)
