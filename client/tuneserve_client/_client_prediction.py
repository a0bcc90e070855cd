"""PredictionService calls of `AsyncClient`: Predict (one batch) and PredictStream (many requests on one stream)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import TypeVar

from ._client_base import ServiceCalls
from ._exceptions import map_rpc_errors
from .proto.tuneserve.v1.prediction_pb2 import (
    PredictRequest,
    PredictResponse,
    PredictStreamRequest,
    PredictStreamResponse,
)

_T = TypeVar("_T")


async def _as_async(items: AsyncIterable[_T] | Iterable[_T]) -> AsyncIterator[_T]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


class PredictionCalls(ServiceCalls):
    async def predict(
        self,
        model_id: str,
        texts: Sequence[str] = (),
        *,
        text_pairs: Sequence[str] = (),
        images: Sequence[bytes] = (),
        version: int = 0,
        top_k: int = 0,
        alias: str = "",
        variant: str = "",
    ) -> PredictResponse:
        """Predicts for `texts` with a text model (a pair model also takes `text_pairs`, the second text of each
        pair, one per text), or `images` (encoded JPEG/PNG/WEBP/BMP files' bytes) with an image model: one
        prediction each, in order. A classifier answers `label` and `scores`, a multi-label model also `labels` (those
        over their threshold), a regression model `value`. `top_k` limits the scores (0: all labels). `alias`
        ("latest", "production"...) overrides `version`; `variant` "int8" asks for the quantised graph."""
        if isinstance(texts, str) or isinstance(text_pairs, str) or isinstance(images, bytes):
            raise TypeError(
                "texts and text_pairs are sequences of strings and images a sequence of bytes objects, one per input"
            )
        request = PredictRequest(
            model_id=model_id, texts=list(texts), text_pairs=list(text_pairs), images=list(images), version=version,
            top_k=top_k, alias=alias, variant=variant,
        )
        return await self._unary(self._prediction.Predict, request, PredictResponse)

    async def predict_stream(
        self,
        requests: AsyncIterable[PredictStreamRequest] | Iterable[PredictStreamRequest],
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[PredictStreamResponse]:
        """Sends `requests` on one bidirectional stream and yields the answers in completion order, each with its
        `request_id`; a failed request is an answer with `error_code`/`error_message`, not an exception. Ends after
        the last request is answered. `timeout` is the deadline of the whole stream (default: none)."""
        call = self._prediction.PredictStream(_as_async(requests), timeout=timeout, metadata=self._metadata)
        try:
            with map_rpc_errors():
                async for response in call:
                    yield response
        finally:
            call.cancel()  # a no-op when the stream ended; stops it when the caller stopped iterating early
