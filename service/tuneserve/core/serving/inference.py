"""Predict: validate the request, resolve the version (number, alias or latest) and variant, and run it through that
model's batcher:

    InferenceService -> VersionResolver.resolve (hot swap, variant) -> VersionResolver.lease (ModelCache) -> Batcher
    -> Runtime

Texts are tokenized off the event loop (short requests inline, see `_INLINE_ENCODE_CHARS`), images (encoded
JPEG/PNG/WEBP/BMP bytes, for image models) always decoded and preprocessed off it, and batched with every other
request for the same version and variant; the caller's deadline travels as `time_remaining` seconds.

No work is done for a caller who is gone: queue room and the deadline are checked before any input is encoded, and
inputs are encoded in pieces of bounded cost (`_PIECE_CHARS`, `_PIECE_IMAGES`), the deadline checked before each, so a
cancelled call (the client cancelled, or its deadline passed: gRPC cancels the handler) stops after the piece at hand
instead of tokenizing, then running, everything it sent. The runtime cuts each text to what the model can read
(limits.max_chars_per_token x max_seq_length characters) before tokenizing it.
`scores(target, inputs)` (Evaluate) and `infer(target, inputs)` (the Open Inference Protocol) go through the same
batcher (they resolve their own reference first), so every caller shares one queue per model and ONNX Runtime never
runs two batches of one session at once.

What every path serves is the version's task's scores (`Runtime.run` = `task.outputs`: probabilities, or values in the
target's units); Predict decodes each row with `task.decode` (label, scores, multi-label labels, regression value).
A pair model (`ModelRecord.text_pairs`) takes (text, text_pair) tuples: Predict's `texts` zipped with `text_pairs`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from tuneserve.core.registry import ModelRegistry, VariantInfo
from tuneserve.core.serving.batching import stack_rows
from tuneserve.core.serving.cache import LoadedModel, ModelCache
from tuneserve.core.serving.requests import (
    ClassScore,
    Inputs,
    Prediction,
    PredictParams,
    PredictResult,
    StreamRequest,
    check_params,
    inputs_for,
)
from tuneserve.core.serving.resolver import Target, VersionRef, VersionResolver
from tuneserve.core.serving.streams import answer_concurrently
from tuneserve.engines.imaging import ImageError
from tuneserve.engines.runtime import Encoded, Runtime
from tuneserve.errors import DeadlineExceeded, InvalidArgument, NotFound
from tuneserve.metrics import Metrics
from tuneserve.settings import BatchingSettings, LimitSettings
from tuneserve.tasks import Decoded, OutputTensor, Source, Task, TaskParams
from tuneserve.types import ModelRecord, VersionState

__all__ = [
    "ClassScore", "InferenceService", "PredictParams", "PredictResult", "Prediction", "Served", "StreamRequest",
    "VersionServing",
]

# NOTE: a thread hop costs ~0.1-0.15 ms here, as much as tokenizing ~200 characters: requests up to this size are
# tokenized inline (blocking the loop < ~0.3 ms), longer ones on the default executor, in pieces.
_INLINE_ENCODE_CHARS = 256
# NOTE: the most one executor hop encodes: ~20-40 ms of tokenizing (or decoding a few images), what a cancelled call
# may still cost; a text counts as the characters the runtime keeps of it (see `_pieces`).
_PIECE_CHARS = 64 * 1024
_PIECE_IMAGES = 4


@dataclass(frozen=True)
class VersionServing:
    loaded: dict[str, str]                 # variant -> execution provider of its open session
    variants: dict[str, VariantInfo]


@dataclass(frozen=True)
class Served:
    """A batch's served scores and how to read them: the version's task, its parameters and its label columns."""

    scores: np.ndarray        # [N, width] float32 (`Task.outputs`); a per-token task's [N, W, L] (word-level)
    task: Task
    params: TaskParams
    labels: list[str]
    sources: list[Source | None] = field(default_factory=list)   # per row: its text and words (per-token tasks)

    def decode(self, index: int, top_k: int) -> Decoded:
        source = self.sources[index] if self.sources else None
        return self.task.decode(self.scores[index], self.labels, self.params, top_k, source)

    def open_inference(self) -> list[OutputTensor]:
        return self.task.open_inference(self.scores, self.labels, self.params, self.sources)


StreamOutcome = tuple[str, "PredictResult | Exception"]


class InferenceService:
    def __init__(
        self,
        registry: ModelRegistry,
        cache: ModelCache,
        resolver: VersionResolver,
        limits: LimitSettings,
        batching: BatchingSettings,
        metrics: Metrics,
    ) -> None:
        self._registry = registry
        self._cache = cache
        self._resolver = resolver
        self._limits = limits
        self._metrics = metrics
        # NOTE: a stream may have this many requests unanswered (or answered but not yet sent) before it stops
        # reading more; the batcher queue holds as many texts, so one stream can saturate but not bloat the server.
        self._stream_window = max(1, batching.max_queue_size)

    async def predict(self, params: PredictParams, time_remaining: float | None = None) -> PredictResult:
        deadline = _deadline(time_remaining)
        check_params(params, self._limits)
        target = await self._resolver.resolve(params.ref)
        model = target.model
        inputs = inputs_for(model, params)
        async with self._resolver.lease(target) as loaded:
            served = await self._served(loaded, inputs, deadline, model.modality)
        self._metrics.predictions.labels(model=model.id).inc(len(inputs))
        predictions = [Prediction.of(served.decode(index, params.top_k)) for index in range(len(served.scores))]
        return PredictResult(model.id, target.version, predictions, target.variant)

    async def predict_stream(self, requests: AsyncIterable[StreamRequest]) -> AsyncIterator[StreamOutcome]:
        """Answer each request (a result or the error it raised) in completion order, reading ahead at most
        `batching.max_queue_size` requests; ends when `requests` ends and every answer has been yielded."""
        async for answer in answer_concurrently(
            requests, lambda r: self.predict(r.params, r.time_remaining), self._stream_window
        ):
            outcome = answer.error if answer.error is not None else answer.result
            assert outcome is not None
            yield answer.request.request_id, outcome

    # -- lifecycle (LoadModel, UnloadModel, GetModel) ------------------------------------------------------------

    async def load_model(self, model_id: str, version: int = 0, variant: str = "") -> ModelRecord:
        """Open (and warm up) a version's session now; version 0 = the latest READY one."""
        target = await self._resolver.named(VersionRef(model_id, version, variant=variant))
        await self._resolver.load(target)
        return target.model

    async def unload_model(self, model_id: str, version: int = 0) -> ModelRecord:
        """Close a version's sessions (every variant; version 0 = every version) once their requests finish."""
        if version < 0:
            raise InvalidArgument("version must be >= 0 (0 = every loaded version)")
        model = await self._registry.get(model_id)
        if version and all(v.version != version for v in model.versions):
            raise NotFound("model version", f"{model_id}/{version}")
        self._cache.unload(model_id, version)
        return model

    def serving(self, model: ModelRecord) -> dict[int, VersionServing]:
        """For each READY version: its open sessions (variant -> provider) and its variants."""
        open_sessions = self._cache.loaded(model.id)
        return {
            v.version: VersionServing(
                loaded={e.key.variant: e.runtime.provider for e in open_sessions if e.key.version == v.version},
                variants=self._registry.variants(model.id, v.version),
            )
            for v in model.versions
            if v.state is VersionState.READY
        }

    async def resolve(self, ref: VersionRef) -> Target:
        """The version that serves `ref` now (`VersionResolver.resolve`), for callers of `scores` and `infer`."""
        return await self._resolver.resolve(ref)

    async def scores(self, target: Target, inputs: Inputs, *, time_remaining: float | None = None) -> np.ndarray:
        """Served scores [len(inputs), width] of a resolved version (`Task.outputs`: probabilities, or values
        [N, 1]), batched with Predict; `inputs` are texts for a text model, (text, text_pair) tuples for a pair
        model, encoded images for an image model (the caller checks which)."""
        return (await self.infer(target, inputs, time_remaining=time_remaining)).scores

    async def infer(self, target: Target, inputs: Inputs, *, time_remaining: float | None = None) -> Served:
        """`scores`, with the task, parameters and labels of the version that produced them."""
        deadline = _deadline(time_remaining)
        # NOTE: never more texts at once than the batcher's queue holds (batching.max_queue_size), or a queue set
        # smaller than the caller's chunk (Evaluate sends 64) would refuse every call with RESOURCE_EXHAUSTED
        step = self._stream_window
        async with self._resolver.lease(target) as loaded:
            parts = [
                await self._served(loaded, inputs[i:i + step], deadline, target.model.modality, offset=i)
                for i in range(0, max(len(inputs), 1), step)
            ]
        scores = parts[0].scores if len(parts) == 1 else stack_rows([row for part in parts for row in part.scores])
        sources = [source for part in parts for source in part.sources]
        return Served(scores, parts[0].task, parts[0].params, parts[0].labels, sources)

    async def _served(
        self, loaded: LoadedModel, inputs: Inputs, deadline: float | None, modality: str, offset: int = 0
    ) -> Served:
        loaded.batcher.admit(len(inputs), _remaining(deadline))   # before the work: the queue has room, time is left
        encoded = await self._encode(loaded.runtime, inputs, deadline, modality, offset)
        scores = await loaded.batcher.submit(encoded, _remaining(deadline))
        runtime = loaded.runtime
        return Served(scores, runtime.task, runtime.params, runtime.labels, [_source(item) for item in encoded])

    async def _encode(
        self, runtime: Runtime, inputs: Inputs, deadline: float | None, modality: str, offset: int
    ) -> list[Encoded]:
        """Encode `inputs` piece by piece off the event loop (short texts inline); stops between pieces when the call
        is cancelled (CancelledError) or its deadline passed (DeadlineExceeded)."""
        if modality != "image" and sum(map(_chars, inputs)) <= _INLINE_ENCODE_CHARS:
            return list(runtime.encode(inputs))
        loop = asyncio.get_running_loop()
        limit = self._limits.max_chars_per_token * runtime.max_seq_length
        encoded: list[Encoded] = []
        for start, stop in _pieces(inputs, modality, limit):
            if deadline is not None and loop.time() >= deadline:
                raise DeadlineExceeded("the deadline passed while the request's inputs were being encoded")
            try:
                encoded.extend(await loop.run_in_executor(None, runtime.encode, inputs[start:stop]))
            except ImageError as exc:
                # NOTE: the runtime numbers images within this call; the piece starts at offset + start in the request
                raise InvalidArgument(_renumbered(str(exc), offset + start)) from None
        return encoded


def _source(item: Encoded) -> Source | None:
    # NOTE: a runtime's features without `source` (a test's fake) decode as every task but per-token ones do
    return getattr(item, "source", None)


def _renumbered(message: str, offset: int) -> str:
    if not offset:
        return message
    return re.sub(r"^image (\d+)", lambda m: f"image {int(m.group(1)) + offset}", message, count=1)


def _pieces(inputs: Sequence[str | bytes | tuple[str, str] | list[str]], modality: str, limit: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of `inputs` of about `_PIECE_CHARS` characters each (a text, or each side of a pair,
    counts as the `limit` characters the runtime keeps of it at most), or `_PIECE_IMAGES` images."""
    if modality == "image":
        return [(i, min(i + _PIECE_IMAGES, len(inputs))) for i in range(0, len(inputs), _PIECE_IMAGES)]
    ranges, start, chars = [], 0, 0
    for index, text in enumerate(inputs):
        chars += _chars(text, limit)
        if chars >= _PIECE_CHARS:
            ranges.append((start, index + 1))
            start, chars = index + 1, 0
    if start < len(inputs):
        ranges.append((start, len(inputs)))
    return ranges


def _deadline(time_remaining: float | None) -> float | None:
    return None if time_remaining is None else asyncio.get_running_loop().time() + time_remaining


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - asyncio.get_running_loop().time()


def _chars(text: str | bytes | tuple[str, str] | list[str], limit: int = 0) -> int:
    """A text's characters (a pair's: both sides'; pre-split words': theirs and a space each), each side counted at
    most `limit` (0 = no limit)."""
    if isinstance(text, list):
        text = " ".join(text)
    sides = text if isinstance(text, tuple) else (text,)
    return sum(min(len(side), limit) if limit > 0 else len(side) for side in sides)
