"""One place that turns exceptions into gRPC status codes and records per-RPC metrics.

`TuneServeError` subclasses carry their code and a message meant for the caller. Any other exception is a bug: it is
logged with its traceback and the caller gets INTERNAL with a generic message (never the exception text).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from tuneserve.errors import TuneServeError
from tuneserve.grpc.handlers import Behavior, wrap_handler
from tuneserve.metrics import Metrics

log = logging.getLogger(__name__)


class StatusInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in grpc-stubs
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        return wrap_handler(
            handler,
            unary=functools.partial(self._unary, method=method),
            stream=functools.partial(self._stream, method=method),
        )

    def _stream(self, behavior: Behavior, method: str) -> Behavior:
        async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as exc:
                code = _status_of(exc, context)
                await _raise_as_status(exc, code, context, method)
            finally:
                self._record(method, code, started)

        return streaming

    def _unary(self, behavior: Behavior, method: str) -> Behavior:
        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return await behavior(request, context)
            except BaseException as exc:
                code = _status_of(exc, context)
                await _raise_as_status(exc, code, context, method)
            finally:
                self._record(method, code, started)

        return unary

    def _record(self, method: str, code: grpc.StatusCode, started: float) -> None:
        self._metrics.rpc_requests.labels(method, code.name).inc()
        self._metrics.rpc_duration.labels(method, code.name).observe(time.perf_counter() - started)


def error_status(exc: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    """The status code and message a failure is answered with where it cannot end the RPC (one answer of a
    PredictStream): the same mapping as for whole RPCs."""
    if isinstance(exc, TuneServeError):
        return grpc.StatusCode[exc.code], exc.message
    log.error("unexpected error in %s", method, exc_info=exc)
    return grpc.StatusCode.INTERNAL, "internal server error (see the server log)"


def _status_of(exc: BaseException, context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    if isinstance(exc, TuneServeError):
        return grpc.StatusCode[exc.code]
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    if isinstance(exc, grpc.aio.AbortError):
        return context.code() or grpc.StatusCode.UNKNOWN  # a handler (health, reflection) set its own status
    return grpc.StatusCode.INTERNAL


async def _raise_as_status(
    exc: BaseException, code: grpc.StatusCode, context: grpc.aio.ServicerContext[Any, Any], method: str
) -> None:
    """Abort the RPC with `code` (always raises)."""
    if isinstance(exc, TuneServeError):
        await context.abort(code, exc.message)
    if isinstance(exc, (asyncio.CancelledError, grpc.aio.AbortError)):
        raise exc
    log.error("unexpected error in %s", method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal server error (see the server log)")
