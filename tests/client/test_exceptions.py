"""map_rpc_errors against a real grpc.aio server on 127.0.0.1:0 whose handler aborts with the status code it is sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from tuneserve_client import (
    AlreadyExists,
    AsyncClient,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    InternalError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    TuneServeError,
    Unauthenticated,
    Unavailable,
    map_rpc_errors,
)
from tuneserve_client.proto.tuneserve.v1 import datasets_pb2_grpc

EXPECTED: dict[grpc.StatusCode, type[TuneServeError]] = {
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNKNOWN: InternalError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: InternalError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.UNIMPLEMENTED: InternalError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DATA_LOSS: InternalError,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
}


async def _abort(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    if request == b"SLOW":
        await asyncio.sleep(5)
        return b""
    code = grpc.StatusCode[request.decode()]
    await context.abort(code, f"details of {code.name}")
    raise AssertionError("abort returned")


class _NoDatasets(datasets_pb2_grpc.DatasetServiceServicer):
    async def GetDataset(self, request, context):  # type: ignore[no-untyped-def]
        await context.abort(grpc.StatusCode.NOT_FOUND, f"dataset {request.id!r} not found")


@pytest.fixture
async def target() -> AsyncIterator[str]:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler("test.Abort", {"Abort": grpc.unary_unary_rpc_method_handler(_abort)})
    server.add_generic_rpc_handlers((handler,))
    datasets_pb2_grpc.add_DatasetServiceServicer_to_server(_NoDatasets(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


@pytest.fixture
async def abort(target: str) -> AsyncIterator[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]]:
    async with grpc.aio.insecure_channel(target) as channel:
        yield channel.unary_unary("/test.Abort/Abort")


def test_every_status_code_but_ok_is_mapped() -> None:
    assert set(EXPECTED) == set(grpc.StatusCode) - {grpc.StatusCode.OK}


@pytest.mark.parametrize("code", list(EXPECTED), ids=lambda code: code.name)
async def test_status_code_maps_to_exception(
    abort: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes], code: grpc.StatusCode
) -> None:
    with pytest.raises(TuneServeError) as info, map_rpc_errors():
        await abort(code.name.encode())
    assert type(info.value) is EXPECTED[code]
    assert info.value.code is code
    assert info.value.details == f"details of {code.name}"
    assert isinstance(info.value.__cause__, grpc.RpcError)


async def test_async_with_form(abort: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]) -> None:
    with pytest.raises(NotFound, match="details of NOT_FOUND"):
        async with map_rpc_errors():
            await abort(b"NOT_FOUND")


async def test_sync_channel(target: str) -> None:
    def call() -> None:  # in a thread: the aio server needs this loop running
        with grpc.insecure_channel(target) as channel, map_rpc_errors():
            channel.unary_unary("/test.Abort/Abort")(b"FAILED_PRECONDITION", timeout=5)

    with pytest.raises(FailedPrecondition, match="details of FAILED_PRECONDITION"):
        await asyncio.to_thread(call)


async def test_client_deadline_is_deadline_exceeded(abort: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]) -> None:
    with pytest.raises(DeadlineExceeded) as info, map_rpc_errors():
        await abort(b"SLOW", timeout=0.05)
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_other_exceptions_pass_through() -> None:
    with pytest.raises(KeyError), map_rpc_errors():
        raise KeyError("x")


async def test_async_client_maps_errors(target: str) -> None:
    async with AsyncClient(target) as client:
        with pytest.raises(NotFound, match="dataset 'nope' not found"):
            await client.get_dataset("nope")
        with pytest.raises(InternalError) as info:  # a servicer base method answers UNIMPLEMENTED
            await client.list_datasets()
    assert info.value.code is grpc.StatusCode.UNIMPLEMENTED


async def test_unreachable_server_is_unavailable(closed_target: str) -> None:
    async with AsyncClient(closed_target, timeout=5) as client:
        with pytest.raises(Unavailable):
            await client.list_backbones()
