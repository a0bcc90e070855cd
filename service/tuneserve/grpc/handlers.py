"""One way for the server's interceptors to re-wrap an RPC method handler, whatever its kind.

gRPC has four kinds of handlers (unary-unary, unary-stream, stream-unary, stream-stream), each built by its own
factory. `wrap_handler` rebuilds a handler of the same kind around a new behavior, keeping its (de)serializers unless
told otherwise, so that the status, validation and auth interceptors share one loop over the kinds instead of three.

A behavior comes in one of two shapes, and the wrappers keep that shape: an async generator function yields its
responses, a coroutine function returns its response (or writes a stream with `context.write`, as grpc_health's Watch
does). The status interceptor must tell the two apart, and a unary-response RPC always has the coroutine shape.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

Behavior = Callable[..., Any]
Wrapper = Callable[[Behavior], Behavior]
Deserializer = Callable[[bytes], Any]

_KINDS = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)
_SAME: Any = object()


def wrap_handler(
    handler: grpc.RpcMethodHandler[Any, Any],
    *,
    unary: Wrapper,
    stream: Wrapper,
    request_deserializer: Deserializer | None = _SAME,
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of `handler`'s kind whose behavior is `stream(behavior)` for an async generator function and
    `unary(behavior)` for a coroutine function; `request_deserializer` replaces the handler's when given."""
    for kind, factory in _KINDS:
        behavior = getattr(handler, kind)
        if behavior is not None:
            wrap = stream if inspect.isasyncgenfunction(behavior) else unary
            deserializer = handler.request_deserializer if request_deserializer is _SAME else request_deserializer
            return factory(
                wrap(behavior),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


def prepare_requests(
    handler: grpc.RpcMethodHandler[Any, Any],
    prepare: Callable[[Any], Any],
    *,
    request_deserializer: Deserializer | None = _SAME,
) -> grpc.RpcMethodHandler[Any, Any]:
    """`wrap_handler` with wrappers that pass each request message through `prepare` before the behavior sees it
    (the one message, or every message of a request stream, as `handler` takes them)."""
    prepared: Callable[[Any], Any] = functools.partial(_each, prepare=prepare) if handler.request_streaming else prepare

    def unary(behavior: Behavior) -> Behavior:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            return await behavior(prepared(request), context)

        return call

    def stream(behavior: Behavior) -> Behavior:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            async for response in behavior(prepared(request), context):
                yield response

        return call

    return wrap_handler(handler, unary=unary, stream=stream, request_deserializer=request_deserializer)


async def _each(requests: AsyncIterator[Any], prepare: Callable[[Any], Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield prepare(request)
