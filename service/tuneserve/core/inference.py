"""Predict: validate the request, pick the servable version, run its runtime off the event loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from tuneserve.core.models_cache import ModelCache
from tuneserve.core.registry import ModelRegistry, ServableVersion
from tuneserve.errors import InvalidArgument
from tuneserve.metrics import Metrics
from tuneserve.settings import LimitSettings


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
class PredictResult:
    model_id: str
    version: int
    predictions: list[Prediction]


class InferenceService:
    def __init__(self, registry: ModelRegistry, cache: ModelCache, limits: LimitSettings, metrics: Metrics) -> None:
        self._registry = registry
        self._cache = cache
        self._limits = limits
        self._metrics = metrics

    async def predict(self, model_id: str, version: int, texts: list[str], top_k: int = 0) -> PredictResult:
        self._validate(model_id, version, texts, top_k)
        servable = await self._registry.servable(model_id, version)
        probs = await self.probabilities(servable, texts)
        self._metrics.predictions.labels(model=model_id).inc(len(texts))
        labels = servable.model.labels
        return PredictResult(model_id, servable.version.version, [_prediction(p, labels, top_k) for p in probs])

    async def probabilities(self, servable: ServableVersion, texts: list[str]) -> np.ndarray:
        runtime = await self._cache.get(servable)
        return await asyncio.to_thread(runtime.predict, texts)

    def _validate(self, model_id: str, version: int, texts: list[str], top_k: int) -> None:
        if not model_id:
            raise InvalidArgument("model_id is required")
        if version < 0:
            raise InvalidArgument("version must be >= 0 (0 = latest READY version)")
        if top_k < 0:
            raise InvalidArgument("top_k must be >= 0 (0 = all classes)")
        if not texts:
            raise InvalidArgument("texts is empty: send at least one text")
        if len(texts) > self._limits.max_predict_batch:
            raise InvalidArgument(
                f"{len(texts)} texts in one request, more than {self._limits.max_predict_batch} "
                "(limit max_predict_batch); split the batch"
            )
        for i, text in enumerate(texts):
            if len(text) > self._limits.max_text_chars:
                raise InvalidArgument(
                    f"texts[{i}] has {len(text)} characters, more than {self._limits.max_text_chars} "
                    "(limit max_text_chars)"
                )


def _prediction(probs: np.ndarray, labels: list[str], top_k: int) -> Prediction:
    order = np.argsort(-probs, kind="stable")
    if top_k:
        order = order[:top_k]
    scores = [ClassScore(labels[i], float(probs[i])) for i in order]
    return Prediction(scores[0].label, scores[0].score, scores)
