"""The fuzz harness: one real server per test module (small limits, bearer tokens on), a raw channel to call any
RPC by its descriptor, and the checks every answer must pass: a proper status code (never UNKNOWN, INTERNAL or
UNIMPLEMENTED), no unexpected error in the server log, and the server still SERVING afterwards."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import event

from tests.conftest import ServerThread, make_settings
from tuneserve.settings import Settings
from tuneserve_client import Client
from tuneserve_client.proto.tuneserve.v1 import datasets_pb2, models_pb2, prediction_pb2, training_pb2

TOKEN = "fuzz-admin-token-0123456789"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
IMPROPER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNIMPLEMENTED}
MAX_TEXT_CHARS = 500
METHODS = [
    method
    for proto in (datasets_pb2, training_pb2, models_pb2, prediction_pb2)
    for service in proto.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]


@dataclass
class Target:
    server: ServerThread
    channel: grpc.Channel
    known_ids: list[str] = field(default_factory=list)
    errors: list[logging.LogRecord] = field(default_factory=list)

    def client(self) -> Client:
        return Client(self.server.target, token=TOKEN, timeout=300)


class _Errors(logging.Handler):
    def __init__(self, sink: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self._sink.append(record)


def fuzz_settings(root: Path, **training: object) -> Settings:
    settings = make_settings(root / "data", root, **training)
    settings.server.max_message_bytes = 256 * 1024
    limits = settings.limits
    limits.max_dataset_bytes, limits.max_dataset_rows, limits.max_labels = 64 * 1024, 200, 20
    limits.max_text_chars, limits.max_predict_batch = MAX_TEXT_CHARS, 8
    settings.batching.max_queue_size = 16
    settings.security.tokens = {TOKEN: "admin"}
    return settings


@contextmanager
def serving(settings: Settings) -> Iterator[Target]:
    """A started server, a raw channel to it, and the tuneserve ERROR log records collected while it runs."""
    server = ServerThread(settings).start()
    options = [("grpc.max_send_message_length", 1 << 20), ("grpc.max_receive_message_length", 1 << 20)]
    target = Target(server, grpc.insecure_channel(server.target, options=options))
    handler = _Errors(target.errors)
    logging.getLogger("tuneserve").addHandler(handler)
    try:
        yield target
    finally:
        logging.getLogger("tuneserve").removeHandler(handler)
        target.channel.close()
        server.close()


def assert_healthy(target: Target) -> None:
    stub = health_pb2_grpc.HealthStub(target.channel)
    assert stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    with target.client() as client:
        client.list_datasets()  # and it still does its work


def full_name(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def invoke(target: Target, method: MethodDescriptor, requests: list[Any], raw: bool = False) -> list[Message]:
    """Call `method` with one request (unary) or the stream `requests`; check the status code and the server log;
    return the responses."""
    serialize = (lambda b: b) if raw else (lambda m: m.SerializeToString())
    deserialize = GetMessageClass(method.output_type).FromString
    kind = {(False, False): "unary_unary", (False, True): "unary_stream", (True, False): "stream_unary",
            (True, True): "stream_stream"}[(method.client_streaming, method.server_streaming)]
    stub = getattr(target.channel, kind)(full_name(method), request_serializer=serialize,
                                         response_deserializer=deserialize)
    argument = iter(requests) if method.client_streaming else requests[0]
    # NOTE: WatchJob follows a job that may never end here: a short deadline ends it (DEADLINE_EXCEEDED is proper)
    timeout = 0.3 if method.server_streaming and not method.client_streaming else 60
    errors_before = len(target.errors)
    try:
        result = stub(argument, timeout=timeout, metadata=AUTH)
        responses = list(result) if method.server_streaming else [result]
        code = grpc.StatusCode.OK
    except grpc.RpcError as error:
        responses, code = [], error.code()  # type: ignore[attr-defined]
        details = error.details()  # type: ignore[attr-defined]
        assert code not in IMPROPER, f"{full_name(method)} answered {code.name}: {details}"
    event(f"{method.name}: {code.name}")
    logged = [r.getMessage() for r in target.errors[errors_before:]]
    assert not logged, f"{full_name(method)} logged errors: {logged}"
    return responses
