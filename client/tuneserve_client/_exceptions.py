"""Exceptions raised by the tuneserve client. Every failed RPC surfaces as exactly one of these, mapped from its gRPC
status code in one place (`map_rpc_errors`). `.code` keeps the status code the server really sent (e.g. an
`InternalError` may carry UNKNOWN or UNIMPLEMENTED).

    TuneServeError
    ├── InvalidArgument      INVALID_ARGUMENT, OUT_OF_RANGE: the request is wrong; details say what to fix
    ├── NotFound             NOT_FOUND: an id that does not exist
    ├── AlreadyExists        ALREADY_EXISTS
    ├── FailedPrecondition   FAILED_PRECONDITION: the request is fine, the state is not (model still training)
    ├── ResourceExhausted    RESOURCE_EXHAUSTED: a limit was reached (queue full, message too large)
    ├── PermissionDenied     PERMISSION_DENIED
    ├── Unauthenticated      UNAUTHENTICATED
    ├── Unavailable          UNAVAILABLE: the server cannot be reached or is shutting down; retry later
    ├── DeadlineExceeded     DEADLINE_EXCEEDED: the call's timeout passed
    ├── Cancelled            CANCELLED
    └── InternalError        INTERNAL, UNKNOWN and every other code
"""

from __future__ import annotations

from types import TracebackType

import grpc

__all__ = [
    "AlreadyExists",
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InternalError",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "TuneServeError",
    "Unauthenticated",
    "Unavailable",
    "map_rpc_errors",
]


class TuneServeError(Exception):
    """Base class of every error the client raises for a failed RPC."""

    default_code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, details: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(details)
        self.details = details
        self.code: grpc.StatusCode = code if code is not None else self.default_code


class InvalidArgument(TuneServeError):
    default_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(TuneServeError):
    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(TuneServeError):
    default_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(TuneServeError):
    default_code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(TuneServeError):
    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class PermissionDenied(TuneServeError):
    default_code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(TuneServeError):
    default_code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(TuneServeError):
    default_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(TuneServeError):
    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(TuneServeError):
    default_code = grpc.StatusCode.CANCELLED


class InternalError(TuneServeError):
    default_code = grpc.StatusCode.INTERNAL


# The one table from gRPC status codes to exceptions. A code missing here (INTERNAL, UNKNOWN, UNIMPLEMENTED,
# ABORTED, DATA_LOSS) becomes InternalError.
_MAPPING: dict[grpc.StatusCode, type[TuneServeError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
}


def _status(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    # grpc.RpcError itself declares neither code() nor details(); the errors grpc raises (grpc.Call, AioRpcError) do.
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    status = code() if callable(code) else grpc.StatusCode.UNKNOWN
    text = details() if callable(details) else None
    return status, text or str(status.value[1])


class map_rpc_errors:
    """Turns a `grpc.RpcError` raised in the block into the matching `TuneServeError` (chained with `from`).

    Works as a context manager and as an async context manager:

        with map_rpc_errors():
            stub.GetJob(request)
        async with map_rpc_errors():
            await stub.GetJob(request)
    """

    def __enter__(self) -> map_rpc_errors:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, grpc.RpcError):
            code, details = _status(exc)
            raise _MAPPING.get(code, InternalError)(details, code=code) from exc

    async def __aenter__(self) -> map_rpc_errors:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)
