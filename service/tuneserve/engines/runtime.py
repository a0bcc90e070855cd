"""ONNX Runtime sessions for exported models: the `Runtime` contract, the image runtime and `open_runtime`, which
opens a model version's runtime (the text runtime is `tuneserve.engines.text_runtime`, the token-classification one
`tuneserve.engines.token_runtime`: word-level scores [N, W, L], each row's words in its features' `source`; what
they share, options and sessions, `tuneserve.engines.onnx_session`).

A runtime is loaded from a model version directory (see `tuneserve.engines.training.spec.ARTIFACTS`) for one variant
(`fp32` = model.onnx, `int8` = model.int8.onnx). Inference is two blocking steps so that a batcher can group texts
by length before padding them:

    features = runtime.encode(texts)        # per text, truncated to max_seq_length, not padded
    scores = runtime.run(features)          # pads to the longest in the batch, runs the session -> served scores

`predict(texts)` does both. Callers run these off the event loop (tokenizers and ONNX Runtime release the GIL).

What `run` returns is the task's served scores (`runtime.task.outputs(logits, runtime.params)`): class probabilities
[N, C] (softmax for single-label classification, per-label sigmoid for multi-label) or values in the target's units
[N, 1] (regression); `task` and `params` come from the version's task.json (`tuneserve.tasks.TaskParams`; missing =
single-label classification). A pair model's text runtime (`text_pairs`) encodes (text, text_pair) tuples.

Image models (preprocessing.json "modality": "image") load as `OnnxImageClassifier`, with the same contract over
image bytes: `encode(images)` decodes (engines.imaging.decode_image, limit `max_image_pixels`) and preprocesses each
image to float32 [3, H, W]; every image has `length` 1, so a token-budget batcher never splits a batch of images.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tuneserve.engines.imaging import ImageError, Preprocessing, decode_image, preprocess
from tuneserve.engines.onnx_session import (
    VARIANT_FILES,
    Head,
    RuntimeOptions,
    Session,
    available_providers,
)
from tuneserve.engines.text_runtime import OnnxTextClassifier, TextFeatures
from tuneserve.engines.token_runtime import OnnxTokenClassifier, TokenFeatures
from tuneserve.engines.training.spec import ARTIFACTS
from tuneserve.tasks import Source, Task, TaskParams

__all__ = [
    "VARIANT_FILES", "Encoded", "OnnxImageClassifier", "OnnxTextClassifier", "OnnxTokenClassifier", "Runtime", "RuntimeOptions",
    "TextFeatures", "TokenFeatures", "available_providers", "open_runtime",
]

log = logging.getLogger(__name__)


class Encoded(Protocol):
    """One input after preprocessing; `length` is what a batch is padded to (tokens for text)."""

    @property
    def length(self) -> int: ...

    @property
    def source(self) -> Source | None:
        """The text and its words, for a per-token task's decoding (None for the others)."""
        ...


class Runtime(Protocol):
    modality: str            # text | image: what encode() and predict() take (str or image bytes)
    labels: list[str]        # the label of each score column ([] for regression)
    task: Task               # how the head's outputs are served and decoded
    params: TaskParams       # what the version learned besides its weights (thresholds, scaler, text_pairs)
    provider: str            # the execution provider the session really runs on
    variant: str             # fp32 | int8
    max_seq_length: int
    memory_bytes: int        # estimate of what the loaded session holds (its ONNX files' size)

    # NOTE: Sequence[Any]: str, (str, str) or bytes is known only at run time (`modality`, `params.text_pairs`); each
    # runtime's own signature is exact
    def encode(self, inputs: Sequence[Any]) -> Sequence[Encoded]:
        """Preprocess each input on its own (no padding). Thread-safe."""
        ...

    def run(self, batch: Sequence[Any]) -> np.ndarray:
        """Served scores of encoded inputs (`task.outputs`), shape [len(batch), width], float32. One caller at a
        time."""
        ...

    def predict(self, inputs: Sequence[Any]) -> np.ndarray: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ImageFeatures:
    pixels: np.ndarray       # float32 [3, H, W], preprocessed as in training

    @property
    def length(self) -> int:
        return 1

    @property
    def source(self) -> None:
        return None


class OnnxImageClassifier:
    modality = "image"

    def __init__(self, version_dir: Path, options: RuntimeOptions, variant: str = "fp32") -> None:
        prep = json.loads((version_dir / ARTIFACTS["preprocessing"]).read_text())
        head = Head.read(version_dir)
        self.variant = variant
        self.labels, self.task, self.params = head.labels, head.task, head.params
        self.preprocessing = Preprocessing.from_json(prep)
        self.max_seq_length = 0  # no tokens: the Runtime contract's field, unused for images
        self._input_name: str = prep["input_name"]
        self._max_pixels = options.max_image_pixels
        self._session = Session(version_dir, variant, options)
        self.memory_bytes, self.provider = self._session.memory_bytes, self._session.provider
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
        """The task's served scores of a batch: [N, len(labels)] probabilities, or [N, 1] values."""
        logits = self._session.run({self._input_name: np.stack([features.pixels for features in batch])})
        return self.task.outputs(logits, self.params)

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
        self._session.close()


def open_runtime(
    version_dir: Path, variant: str, *, options: RuntimeOptions
) -> OnnxTextClassifier | OnnxImageClassifier | OnnxTokenClassifier:
    """The loader the model cache uses: `functools.partial(open_runtime, options=...)`; the version's
    preprocessing.json says which modality (text when it does not say), its task whether it answers per token."""
    prep = json.loads((version_dir / ARTIFACTS["preprocessing"]).read_text())
    if prep.get("modality", "text") == "image":
        return OnnxImageClassifier(version_dir, options, variant)
    if Head.read(version_dir).task.per_token:
        return OnnxTokenClassifier(version_dir, options, variant)
    return OnnxTextClassifier(version_dir, options, variant)
