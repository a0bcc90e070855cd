"""Predict: validate the request, resolve the version (number, alias or latest) and variant, and run it through that
model's batcher:

    InferenceService -> VersionResolver.resolve (hot swap, variant) -> VersionResolver.lease (ModelCache) -> Batcher
    -> Runtime

Texts are tokenized off the event loop (short requests inline, see `_INLINE_ENCODE_CHARS`), images (encoded
JPEG/PNG/WEBP/BMP bytes, for image models) always decoded and preprocessed off it, and batched with every other
request for the same version and variant; the caller's deadline travels as `time_remaining` seconds.
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
from tuneserve.errors import InvalidArgument, NotFound
from tuneserve.metrics import Metrics
from tuneserve.settings import BatchingSettings, LimitSettings
from tuneserve.types import ModelRecord, VersionState

# NOTE: a thread hop costs ~0.1-0.15 ms here, as much as tokenizing ~200 characters: requests up to this size are
# tokenized inline (blocking the loop < ~0.3 ms), longer ones (up to max_predict_batch x max_text_chars, which can
# take seconds) on the default executor.
_INLINE_ENCODE_CHARS = 256


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
        runtime = loaded.runtime
        if modality == "image":
            try:
                encoded = await asyncio.get_running_loop().run_in_executor(None, runtime.encode, inputs)
            except ImageError as exc:
                # NOTE: the runtime numbers images within this call; `offset` is where the call starts in the request
                raise InvalidArgument(_renumbered(str(exc), offset)) from None
        elif sum(map(len, inputs)) <= _INLINE_ENCODE_CHARS:
            encoded = runtime.encode(inputs)
        else:
            encoded = await asyncio.get_running_loop().run_in_executor(None, runtime.encode, inputs)
        remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
        return await loaded.batcher.submit(encoded, remaining)

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
            if not text.strip():
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


def _deadline(time_remaining: float | None) -> float | None:
    return None if time_remaining is None else asyncio.get_running_loop().time() + time_remaining


def _prediction(probs: np.ndarray, labels: list[str], top_k: int) -> Prediction:
    order = np.argsort(-probs, kind="stable")
    if top_k:
        order = order[:top_k]
    scores = [ClassScore(labels[i], float(probs[i])) for i in order]
    return Prediction(scores[0].label, scores[0].score, scores)
