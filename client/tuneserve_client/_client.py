"""`AsyncClient`: the typed asyncio client of the four tuneserve.v1 services. The sync `Client` wraps it.

The calls of each service live in a mixin of their own: `_client_datasets`, `_client_training`, `_client_models`,
`_client_prediction` (their shared base: `_client_base`). This module builds the channel and the stubs.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from ._client_datasets import DatasetCalls
from ._client_models import ModelCalls
from ._client_prediction import PredictionCalls
from ._client_training import TrainingCalls
from ._security import PemSource, Security
from ._version import __version__
from .proto.tuneserve.v1 import datasets_pb2_grpc, models_pb2_grpc, prediction_pb2_grpc, training_pb2_grpc

__all__ = ["AsyncClient"]

DEFAULT_TARGET = "localhost:50051"


def _channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    # gRPC's default 4 MiB receive limit rejects real Predict batches and evaluation reports: set both directions.
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.primary_user_agent", f"tuneserve-client/{__version__}"),
    ]


class AsyncClient(DatasetCalls, TrainingCalls, ModelCalls, PredictionCalls):
    """Typed asyncio client for a tuneserve server.

        async with AsyncClient("localhost:50051") as client:
            dataset = await client.upload_dataset("train.csv")
            job = await client.fine_tune(dataset.id, hyperparameters={"epochs": 3})
            job = await client.wait_for_job(job.id, on_event=print)
            response = await client.predict(job.model_id, ["some text"])

    `timeout` is the deadline of each unary call in seconds (None: no deadline); the streaming calls (upload_dataset,
    watch_job) have none. `metadata` is sent with every call. Pass `channel` to use your own `grpc.aio.Channel`
    (interceptors, tests); the client then leaves closing it to you. Every failed call raises a `TuneServeError`
    subclass.

    Security: `token` is sent as `authorization: Bearer TOKEN` with every call. `tls=True` opens a TLS channel that
    checks the server's certificate against the system's roots, or against `root_certificates` (PEM bytes or a file
    path; implies TLS); `client_cert` and `client_key` (PEM bytes or paths, both or neither) add the client's
    certificate for mutual TLS. Unreadable files raise OSError, inconsistent options ValueError.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        channel: grpc.aio.Channel | None = None,
        timeout: float | None = 60.0,
        max_message_bytes: int = 64 * 1024 * 1024,
        metadata: Sequence[tuple[str, str]] = (),
        token: str | None = None,
        tls: bool = False,
        root_certificates: PemSource | None = None,
        client_cert: PemSource | None = None,
        client_key: PemSource | None = None,
    ) -> None:
        security = Security.from_options(
            token=token, tls=tls, root_certificates=root_certificates, client_cert=client_cert, client_key=client_key
        )
        if channel is not None and security.tls:
            raise ValueError("pass either channel or TLS options: the TLS options cannot apply to your own channel")
        self.target = target
        self._owns_channel = channel is None
        if channel is None:
            options = _channel_options(max_message_bytes)
            channel = (
                grpc.aio.secure_channel(target, security.credentials(), options=options)
                if security.tls
                else grpc.aio.insecure_channel(target, options=options)
            )
        self._channel = channel
        self._timeout = timeout
        self._metadata = (*security.metadata(), *metadata)
        self._datasets = datasets_pb2_grpc.DatasetServiceStub(channel)
        self._training = training_pb2_grpc.TrainingServiceStub(channel)
        self._models = models_pb2_grpc.ModelServiceStub(channel)
        self._prediction = prediction_pb2_grpc.PredictionServiceStub(channel)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the channel the client created (an injected channel stays open)."""
        if self._owns_channel:
            await self._channel.close(None)
