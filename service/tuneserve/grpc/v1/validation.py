"""Checks every request message before a servicer sees it: it must decode, and its names and ids must be short and
printable.

A message that does not decode (corrupt wire format, a string field that is not UTF-8) is answered INVALID_ARGUMENT;
left to grpc, a unary call would end UNKNOWN with the exception's text, and a streamed message would crash the
servicer reading it (INTERNAL). This applies to every service on the port.

Every string field of a tuneserve.v1 request (ids, names, aliases, variants, backbone, columns, page tokens, request
ids), nested and repeated ones included, may hold at most `limits.max_name_chars` characters (the only free text,
Predict's `texts` and `text_pairs`, has its own limit, `limits.max_text_chars`, checked by the inference core), and
may hold no control character (an ANSI escape sequence, a newline, any C0/C1 control, a bidirectional override:
`core.names`). The same applies to the Open Inference Protocol's string fields (model names and versions, request
ids, tensor names; its texts travel as bytes): a 20,000-character model name there is answered INVALID_ARGUMENT rather
than echoed into a NOT_FOUND status whose message outgrows gRPC's metadata limit. A field that breaks a rule is
answered INVALID_ARGUMENT naming it, before the servicer runs. Streamed requests are checked message by message.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from tuneserve.core.names import unprintable
from tuneserve.errors import InvalidArgument
from tuneserve.grpc.handlers import Deserializer, prepare_requests
from tuneserve_client.proto.inference import grpc_service_pb2
from tuneserve_client.proto.tuneserve.v1 import prediction_pb2

_SCOPES = ("/tuneserve.v1.", f"/{grpc_service_pb2.DESCRIPTOR.services_by_name['GRPCInferenceService'].full_name}/")
_FREE_TEXT = frozenset(
    prediction_pb2.PredictRequest.DESCRIPTOR.fields_by_name[name].full_name for name in ("texts", "text_pairs")
)


class _Malformed:
    """What the tolerant deserializer returns for bytes that do not decode; the behavior wrapper raises for it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def check_names(message: Message, limit: int, prefix: str = "") -> None:
    """Raise InvalidArgument when a string field of `message` (except free text) is longer than `limit` or holds a
    control character."""
    for field, value in message.ListFields():
        name = prefix + field.name
        if field.type == FieldDescriptor.TYPE_STRING and field.full_name not in _FREE_TEXT:
            for index, text in enumerate(value if field.is_repeated else [value]):
                where = f"{name}[{index}]" if field.is_repeated else name
                if len(text) > limit:
                    raise InvalidArgument(
                        f"{where} has {len(text)} characters, more than {limit} (limit max_name_chars)"
                    )
                bad = unprintable(text)
                if bad is not None:
                    raise InvalidArgument(f"{where} holds {bad}; names and ids may not hold control characters")
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            # NOTE: no tuneserve.v1 request has a map field today; a future one needs its own rule here
            for index, sub in enumerate(value if field.is_repeated else [value]):
                check_names(sub, limit, f"{name}[{index}]." if field.is_repeated else f"{name}.")


class RequestValidationInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in grpc-stubs
    """Refuses request messages that do not decode (every service) and applies `check_names` to tuneserve.v1 and
    Open Inference Protocol ones.
    It raises inside the call, so the status interceptor (outside this one) answers with the error's code."""

    def __init__(self, max_name_chars: int) -> None:
        self._limit = max_name_chars

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        check = self._check_names if handler_call_details.method.startswith(_SCOPES) else None
        return prepare_requests(
            handler, functools.partial(_checked, check), request_deserializer=_tolerant(handler.request_deserializer)
        )

    def _check_names(self, request: Message) -> None:
        check_names(request, self._limit)


def _tolerant(deserialize: Deserializer | None) -> Deserializer | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as exc:
            return _Malformed(str(exc))

    return parse


def _checked(check: Callable[[Message], None] | None, request: Any) -> Any:
    if isinstance(request, _Malformed):
        raise InvalidArgument(f"malformed request message: {request.reason}")
    if check is not None:
        check(request)
    return request
