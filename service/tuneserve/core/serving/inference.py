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
`probabilities(target, inputs)` (Evaluate, the Open Inference Protocol: they resolve their own reference first) goes
through the same batcher, so every caller shares one queue per model and ONNX Runtime never runs two batches of one
session at once.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np

from tuneserve.core.registry import ModelRegistry, VariantInfo
from tuneserve.core.serving.cache import LoadedModel, ModelCache
from tuneserve.core.serving.resolver import Target, VersionRef, VersionResolver
from tuneserve.core.serving.streams import answer_concurrently
from tuneserve.engines.imaging import ImageError
from tuneserve.engines.runtime import Encoded, Runtime
from tuneserve.errors import DeadlineExceeded, InvalidArgument, NotFound
from tuneserve.metrics import Metrics
from tuneserve.settings import BatchingSettings, LimitSettings
from tuneserve.types import ModelRecord, VersionState

# NOTE: a thread hop costs ~0.1-0.15 ms here, as much as tokenizing ~200 characters: requests up to this size are
# tokenized inline (blocking the loop < ~0.3 ms), longer ones on the default executor, in pieces.
_INLINE_ENCODE_CHARS = 256
# NOTE: the most one executor hop encodes: ~20-40 ms of tokenizing (or decoding a few images), what a cancelled call
# may still cost; a text counts as the characters the runtime keeps of it (see `_pieces`).
_PIECE_CHARS = 64 * 1024
_PIECE_IMAGES = 4


@dataclass(frozen=True)
class ClassScore:
    label: str
    score: float


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float
    scores: list[ClassScore]


@dataclass(frozen=True)
class PredictParams:
    model_id: str
    texts: list[str]
    version: int = 0          # 0 = latest READY
    top_k: int = 0            # 0 = all classes
    alias: str = ""           # overrides version when set
    variant: str = ""         # "" = fp32
    images: Sequence[bytes] = ()   # encoded images, for image models (exactly one of texts and images is non-empty)

    @property
    def ref(self) -> VersionRef:
        return VersionRef(self.model_id, self.version, self.alias, self.variant)


@dataclass(frozen=True)
class PredictResult:
    model_id: str
    version: int
    predictions: list[Prediction]
    variant: str = "fp32"


@dataclass(frozen=True)
class VersionServing:
    loaded: dict[str, str]                 # variant -> execution provider of its open session
    variants: dict[str, VariantInfo]


@dataclass(frozen=True)
class StreamRequest:
    request_id: str
    params: PredictParams
    time_remaining: float | None = None


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
        self._validate(params)
        target = await self._resolver.resolve(params.ref)
        model = target.model
        inputs = _inputs_for(model, params)
        async with self._resolver.lease(target) as loaded:
            probs = await self._run(loaded, inputs, deadline, model.modality)
        self._metrics.predictions.labels(model=model.id).inc(len(inputs))
        predictions = [_prediction(p, model.labels, params.top_k) for p in probs]
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
        """The version that serves `ref` now (`VersionResolver.resolve`), for callers of `probabilities`."""
        return await self._resolver.resolve(ref)

    async def probabilities(
        self, target: Target, inputs: Sequence[str] | Sequence[bytes], *, time_remaining: float | None = None,
    ) -> np.ndarray:
        """Class probabilities [len(inputs), C] of a resolved version, batched with Predict; `inputs` are texts for a
        text model, encoded images for an image model (the caller checks which)."""
        deadline = _deadline(time_remaining)
        # NOTE: never more texts at once than the batcher's queue holds (batching.max_queue_size), or a queue set
        # smaller than the caller's chunk (Evaluate sends 64) would refuse every call with RESOURCE_EXHAUSTED
        step = self._stream_window
        async with self._resolver.lease(target) as loaded:
            parts = [
                await self._run(loaded, inputs[i:i + step], deadline, target.model.modality, offset=i)
                for i in range(0, max(len(inputs), 1), step)
            ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def _run(
        self, loaded: LoadedModel, inputs: Sequence[str] | Sequence[bytes], deadline: float | None, modality: str,
        offset: int = 0,
    ) -> np.ndarray:
        loaded.batcher.admit(len(inputs), _remaining(deadline))   # before the work: the queue has room, time is left
        encoded = await self._encode(loaded.runtime, inputs, deadline, modality, offset)
        return await loaded.batcher.submit(encoded, _remaining(deadline))

    async def _encode(
        self, runtime: Runtime, inputs: Sequence[str] | Sequence[bytes], deadline: float | None, modality: str,
        offset: int,
    ) -> list[Encoded]:
        """Encode `inputs` piece by piece off the event loop (short texts inline); stops between pieces when the call
        is cancelled (CancelledError) or its deadline passed (DeadlineExceeded)."""
        if modality != "image" and sum(map(len, inputs)) <= _INLINE_ENCODE_CHARS:
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

    def _validate(self, params: PredictParams) -> None:
        # NOTE: before the texts, as the resolver would (it runs after the cheap checks here)
        if not params.model_id:
            raise InvalidArgument("model_id is required")
        if params.version < 0:
            raise InvalidArgument("version must be >= 0 (0 = latest READY version)")
        if params.top_k < 0:
            raise InvalidArgument("top_k must be >= 0 (0 = all classes)")
        if params.texts and params.images:
            raise InvalidArgument("send texts (text models) or images (image models), not both in one request")
        if not params.texts and not params.images:
            raise InvalidArgument("texts is empty: send at least one text (or images, for an image model)")
        kind, count = ("images", len(params.images)) if params.images else ("texts", len(params.texts))
        if count > self._limits.max_predict_batch:
            raise InvalidArgument(
                f"{count} {kind} in one request, more than {self._limits.max_predict_batch} "
                "(limit max_predict_batch); split the batch"
            )
        for i, image in enumerate(params.images):
            if not image:
                raise InvalidArgument(f"images[{i}] is empty (0 bytes); send the encoded JPEG/PNG/WEBP/BMP file")
        for i, text in enumerate(params.texts):
            if not text or text.isspace():
                # NOTE: as an upload refuses an empty text: a model has nothing to read in it
                raise InvalidArgument(f"texts[{i}] is empty or only whitespace; send the text to classify")
            if len(text) > self._limits.max_text_chars:
                raise InvalidArgument(
                    f"texts[{i}] has {len(text)} characters, more than {self._limits.max_text_chars} "
                    "(limit max_text_chars)"
                )


def _inputs_for(model: ModelRecord, params: PredictParams) -> Sequence[str] | Sequence[bytes]:
    """The request's texts or images, refused when they do not match what the model takes."""
    if model.modality == "image":
        if params.texts:
            raise InvalidArgument(f"model {model.id!r} is an image model: send images, not texts")
        return params.images
    if params.images:
        raise InvalidArgument(f"model {model.id!r} is a text model: send texts, not images")
    return params.texts


def _renumbered(message: str, offset: int) -> str:
    if not offset:
        return message
    return re.sub(r"^image (\d+)", lambda m: f"image {int(m.group(1)) + offset}", message, count=1)


def _pieces(inputs: Sequence[str] | Sequence[bytes], modality: str, limit: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of `inputs` of about `_PIECE_CHARS` characters each (a text counts as the `limit`
    characters the runtime keeps of it at most), or `_PIECE_IMAGES` images."""
    if modality == "image":
        return [(i, min(i + _PIECE_IMAGES, len(inputs))) for i in range(0, len(inputs), _PIECE_IMAGES)]
    ranges, start, chars = [], 0, 0
    for index, text in enumerate(inputs):
        chars += min(len(text), limit) if limit > 0 else len(text)
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


def _prediction(probs: np.ndarray, labels: list[str], top_k: int) -> Prediction:
    order = np.argsort(-probs, kind="stable")
    if top_k:
        order = order[:top_k]
    scores = [ClassScore(labels[i], float(probs[i])) for i in order]
    return Prediction(scores[0].label, scores[0].score, scores)
