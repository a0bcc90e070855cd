"""ONNX Runtime sessions for exported classifiers: the `Runtime` contract and its ONNX Runtime implementation.

A runtime is loaded from a model version directory (see `tuneserve.engines.training.spec.ARTIFACTS`) for one variant
(`fp32` = model.onnx, `int8` = model.int8.onnx). Inference is two blocking steps so that a batcher can group texts
by length before padding them:

    features = runtime.encode(texts)        # per text, truncated to max_seq_length, not padded
    probs = runtime.run(features)           # pads to the longest in the batch, runs the session -> [N, C] float32

`predict(texts)` does both. Callers run these off the event loop (tokenizers and ONNX Runtime release the GIL).

A text is cut to `max_chars_per_token x max_seq_length` characters (RuntimeOptions, limits.max_chars_per_token)
before it is tokenized: the tokenizer's truncation keeps the first max_seq_length tokens but still tokenizes the whole
text, so a 100,000-character text would cost 100,000 characters of work for the 128 tokens the model reads.

Image models (preprocessing.json "modality": "image") load as `OnnxImageClassifier`, with the same contract over
image bytes: `encode(images)` decodes (engines.imaging.decode_image, limit `max_image_pixels`) and preprocesses each
image to float32 [3, H, W]; every image has `length` 1, so a token-budget batcher never splits a batch of images.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from tuneserve.engines.imaging import ImageError, Preprocessing, decode_image, preprocess
from tuneserve.engines.training.spec import ARTIFACTS

log = logging.getLogger(__name__)

VARIANT_FILES = {"fp32": ARTIFACTS["onnx"], "int8": ARTIFACTS["onnx_int8"]}


@dataclass(frozen=True)
class RuntimeOptions:
    intra_op_threads: int
    intra_op_spinning: bool = True  # session.intra_op.allow_spinning (inference.intra_op_spinning)
    providers: tuple[str, ...] = ("CUDAExecutionProvider", "CPUExecutionProvider")
    max_image_pixels: int = 25_000_000  # image models: larger images are refused before decoding (limits)
    max_chars_per_token: int = 32  # text models: texts are cut to this x max_seq_length characters first (limits)


class Encoded(Protocol):
    """One input after preprocessing; `length` is what a batch is padded to (tokens for text)."""

    @property
    def length(self) -> int: ...


class Runtime(Protocol):
    modality: str            # text | image: what encode() and predict() take (str or image bytes)
    labels: list[str]
    provider: str            # the execution provider the session really runs on
    variant: str             # fp32 | int8
    max_seq_length: int
    memory_bytes: int        # estimate of what the loaded session holds (its ONNX files' size)

    # NOTE: Sequence[Any]: str or bytes is known only at run time (`modality`); each runtime's own signature is exact
    def encode(self, inputs: Sequence[Any]) -> Sequence[Encoded]:
        """Preprocess each input on its own (no padding). Thread-safe."""
        ...

    def run(self, batch: Sequence[Any]) -> np.ndarray:
        """Class probabilities of encoded inputs, shape [len(batch), len(labels)], float32. One caller at a time."""
        ...

    def predict(self, inputs: Sequence[Any]) -> np.ndarray: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TextFeatures:
    ids: np.ndarray          # int64 token ids, [CLS] ... [SEP], truncated
    type_ids: np.ndarray     # int64 token type ids

    @property
    def length(self) -> int:
        return int(self.ids.shape[0])


class OnnxTextClassifier:
    modality = "text"

    def __init__(self, version_dir: Path, options: RuntimeOptions, variant: str = "fp32") -> None:
        prep = json.loads((version_dir / ARTIFACTS["preprocessing"]).read_text())
        onnx_path = version_dir / VARIANT_FILES[variant]
        self.variant = variant
        self.labels: list[str] = json.loads((version_dir / ARTIFACTS["labels"]).read_text())["labels"]
        self.max_seq_length: int = int(prep["max_seq_length"])
        self.memory_bytes: int = sum(p.stat().st_size for p in version_dir.glob(onnx_path.name + "*") if p.is_file())
        self._input_names: list[str] = list(prep["input_names"])
        tokenizer_dir = _inside(version_dir, prep.get("tokenizer", ARTIFACTS["tokenizer"]))
        max_chars = options.max_chars_per_token * self.max_seq_length
        self._encoder = _TokenEncoder(tokenizer_dir, self.max_seq_length, max_chars)
        self._session = ort.InferenceSession(
            str(onnx_path), sess_options=_session_options(options), providers=_usable_providers(options.providers)
        )
        # NOTE: onnxruntime-gpu lists CUDA even where it silently falls back; the session says what it really uses
        self.provider: str = self._session.get_providers()[0]
        self._warm_up()

    def encode(self, texts: Sequence[str]) -> list[TextFeatures]:
        return self._encoder.encode(texts)

    def run(self, batch: Sequence[TextFeatures]) -> np.ndarray:
        feeds = self._pad(batch)
        if self.provider == "CUDAExecutionProvider":
            logits = self._run_io_binding(feeds)
        else:
            logits = self._session.run(["logits"], feeds)[0]
        return _softmax(logits)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.run(self.encode(texts))

    def _pad(self, batch: Sequence[TextFeatures]) -> dict[str, np.ndarray]:
        longest = max(f.length for f in batch)
        ids = np.full((len(batch), longest), self._encoder.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), longest), dtype=np.int64)
        types = np.zeros((len(batch), longest), dtype=np.int64)
        for row, features in enumerate(batch):
            ids[row, : features.length] = features.ids
            mask[row, : features.length] = 1
            types[row, : features.length] = features.type_ids
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: arrays[name] for name in self._input_names}

    def _run_io_binding(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return _run_io_binding(self._session, feeds)

    def _warm_up(self) -> None:
        # NOTE: a short batch of one and a full-length batch, so ORT has planned and allocated both extremes before
        # the first request arrives.
        started = time.perf_counter()
        self.predict(["warm up"])
        self.predict(["warm up " * self.max_seq_length] * 4)
        log.info("%s warmed up on %s in %.0f ms", self.variant, self.provider, (time.perf_counter() - started) * 1e3)

    def close(self) -> None:
        del self._session


class _TokenEncoder:
    """Tokenizes exactly as the training pipeline's tokenizer call (truncation to max_seq_length), without padding.

    NOTE: calling a transformers tokenizer with truncation/padding arguments reconfigures its Rust tokenizer on every
    call, which fails ("Already borrowed") when threads share it. A private copy of the backend, configured once,
    is read-only afterwards and safe to call from any thread.
    """

    def __init__(self, tokenizer_dir: Path, max_length: int, max_chars: int) -> None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.pad_id: int = int(tokenizer.pad_token_id or 0)
        self._max_chars = max_chars
        self._lock: threading.Lock | None = None
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:  # a tokenizer without a Rust backend: serialise calls instead
            self._tokenizer, self._lock, self._max_length = tokenizer, threading.Lock(), max_length
            return
        self._backend = backend.__class__.from_str(backend.to_str())
        self._backend.enable_truncation(max_length)
        self._backend.no_padding()

    def encode(self, texts: Sequence[str]) -> list[TextFeatures]:
        # NOTE: a prefix yields the same first max_length tokens as the whole text when the words before its last
        # (possibly cut) one hold that many: only texts averaging more than max_chars / max_length characters per
        # token (words of dozens of letters) are read shorter than the tokenizer's truncation alone would read them.
        texts = [text[: self._max_chars] for text in texts]
        if self._lock is not None:
            with self._lock:
                out = self._tokenizer(texts, truncation=True, max_length=self._max_length)
            types = out.get("token_type_ids") or [[0] * len(ids) for ids in out["input_ids"]]
            return [_features(ids, t) for ids, t in zip(out["input_ids"], types, strict=True)]
        return [_features(e.ids, e.type_ids) for e in self._backend.encode_batch(texts)]


def _features(ids: Sequence[int], type_ids: Sequence[int]) -> TextFeatures:
    return TextFeatures(np.asarray(ids, dtype=np.int64), np.asarray(type_ids, dtype=np.int64))


@dataclass(frozen=True, slots=True)
class ImageFeatures:
    pixels: np.ndarray       # float32 [3, H, W], preprocessed as in training

    @property
    def length(self) -> int:
        return 1


class OnnxImageClassifier:
    modality = "image"

    def __init__(self, version_dir: Path, options: RuntimeOptions, variant: str = "fp32") -> None:
        prep = json.loads((version_dir / ARTIFACTS["preprocessing"]).read_text())
        onnx_path = version_dir / VARIANT_FILES[variant]
        self.variant = variant
        self.labels: list[str] = json.loads((version_dir / ARTIFACTS["labels"]).read_text())["labels"]
        self.preprocessing = Preprocessing.from_json(prep)
        self.max_seq_length = 0  # no tokens: the Runtime contract's field, unused for images
        self.memory_bytes: int = sum(p.stat().st_size for p in version_dir.glob(onnx_path.name + "*") if p.is_file())
        self._input_name: str = prep["input_name"]
        self._max_pixels = options.max_image_pixels
        self._session = ort.InferenceSession(
            str(onnx_path), sess_options=_session_options(options), providers=_usable_providers(options.providers)
        )
        self.provider: str = self._session.get_providers()[0]
        self._warm_up()

    def encode(self, images: Sequence[bytes]) -> list[ImageFeatures]:
        """Decode and preprocess each image; a bad one raises ImageError("image {index}: ...")."""
        features = []
        for index, data in enumerate(images):
            try:
                image = decode_image(data, max_pixels=self._max_pixels)
            except ImageError as error:
                raise ImageError(f"image {index}: {error}") from None
            features.append(ImageFeatures(preprocess(image, self.preprocessing)))
        return features

    def run(self, batch: Sequence[ImageFeatures]) -> np.ndarray:
        feeds = {self._input_name: np.stack([features.pixels for features in batch])}
        if self.provider == "CUDAExecutionProvider":
            logits = _run_io_binding(self._session, feeds)
        else:
            logits = self._session.run(["logits"], feeds)[0]
        return _softmax(logits)

    def predict(self, images: Sequence[bytes]) -> np.ndarray:
        return self.run(self.encode(images))

    def _warm_up(self) -> None:
        started = time.perf_counter()
        crop = self.preprocessing.crop
        blank = ImageFeatures(np.zeros((3, crop, crop), dtype=np.float32))
        self.run([blank])
        self.run([blank] * 8)
        log.info("%s warmed up on %s in %.0f ms", self.variant, self.provider, (time.perf_counter() - started) * 1e3)

    def close(self) -> None:
        del self._session


def open_runtime(
    version_dir: Path, variant: str, *, options: RuntimeOptions
) -> OnnxTextClassifier | OnnxImageClassifier:
    """The loader the model cache uses: `functools.partial(open_runtime, options=...)`; the version's
    preprocessing.json says which modality (text when it does not say)."""
    prep = json.loads((version_dir / ARTIFACTS["preprocessing"]).read_text())
    if prep.get("modality", "text") == "image":
        return OnnxImageClassifier(version_dir, options, variant)
    return OnnxTextClassifier(version_dir, options, variant)


def _run_io_binding(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> np.ndarray:
    # NOTE: binds inputs once on the GPU and lets ORT allocate the output there, avoiding the extra copies
    # session.run makes; the logits (N x C floats) come back to the host.
    binding = session.io_binding()
    for name, array in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0))
    binding.bind_output("logits", "cuda")
    session.run_with_iobinding(binding)
    outputs: list[np.ndarray] = binding.copy_outputs_to_cpu()
    return outputs[0]


def _inside(version_dir: Path, relative: str) -> Path:
    """`version_dir / relative`, refused if it leads out of the version directory (a tampered preprocessing.json):
    everything a runtime loads comes from the registry's artifact directory."""
    path = (version_dir / relative).resolve()
    if not path.is_relative_to(version_dir.resolve()):
        raise ValueError(f"{version_dir}: preprocessing.json points outside the version directory ({relative!r})")
    return path


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


def _usable_providers(preferred: tuple[str, ...]) -> list[str]:
    available = set(ort.get_available_providers())
    chosen = [p for p in preferred if p in available]
    return chosen or ["CPUExecutionProvider"]


def _session_options(options: RuntimeOptions) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # NOTE: intra-op threads come from the container's CPU quota (tuneserve.cpus.available_cpus), not the host's count;
    # one inter-op thread because the graph runs sequentially and a batcher already serialises runs per session.
    so.intra_op_num_threads = options.intra_op_threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.intra_op_spinning else "0")
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return so


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted, dtype=np.float32)
    probabilities: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return probabilities
