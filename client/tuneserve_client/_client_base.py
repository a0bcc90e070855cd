"""What the per-service halves of `AsyncClient` share: the channel's stubs, the call options and `_unary`.

`AsyncClient` (in `_client`) is one class made of one mixin per tuneserve.v1 service: `_client_datasets`,
`_client_training`, `_client_models` and `_client_prediction`; its `__init__` sets the attributes declared here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from google.protobuf.message import Message

from ._exceptions import map_rpc_errors
from .proto.tuneserve.v1 import datasets_pb2_grpc, models_pb2_grpc, prediction_pb2_grpc, training_pb2_grpc

_R = TypeVar("_R", bound=Message)


class ServiceCalls:
    """The base of each service's mixin: the stubs and options `AsyncClient.__init__` sets, and the unary call."""

    _timeout: float | None
    _metadata: tuple[tuple[str, str], ...]
    _datasets: datasets_pb2_grpc.DatasetServiceStub
    _training: training_pb2_grpc.TrainingServiceStub
    _models: models_pb2_grpc.ModelServiceStub
    _prediction: prediction_pb2_grpc.PredictionServiceStub

    async def _unary(self, method: Callable[..., Awaitable[Any]], request: Message, returns: type[_R]) -> _R:
        # `returns` names the response type for the type checker: the generated stubs are untyped
        with map_rpc_errors():
            return cast(_R, await method(request, timeout=self._timeout, metadata=self._metadata))


def enum_name(prefix: str, name: str) -> str:
    """The proto enum value's name of a short or full name: ("JOB_STATE_", "running") -> "JOB_STATE_RUNNING"."""
    name = name.upper()
    return name if name.startswith(prefix) else prefix + name
