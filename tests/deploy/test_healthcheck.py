"""`python -m tuneserve.healthcheck` against a real grpc.health.v1 server on loopback, as the Docker HEALTHCHECK runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tuneserve.healthcheck import main

SERVICE = "tuneserve.v1.PredictionService"


class HealthServer:
    def __init__(self) -> None:
        self.servicer = health.HealthServicer()
        self.server = grpc.server(ThreadPoolExecutor(2))
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{self.port}"
        self.server.start()

    def set(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType, service: str = "") -> None:
        self.servicer.set(service, status)


@pytest.fixture
def health_server() -> Iterator[HealthServer]:
    server = HealthServer()
    try:
        yield server
    finally:
        server.server.stop(None)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serving_exits_0(health_server: HealthServer, capsys: pytest.CaptureFixture[str]) -> None:
    health_server.set(health_pb2.HealthCheckResponse.SERVING)
    health_server.set(health_pb2.HealthCheckResponse.SERVING, SERVICE)
    assert main(["--target", health_server.target]) == 0
    assert main(["--target", health_server.target, "--service", SERVICE]) == 0
    assert capsys.readouterr().err == ""


def test_not_serving_exits_1_with_one_line(health_server: HealthServer, capsys: pytest.CaptureFixture[str]) -> None:
    health_server.set(health_pb2.HealthCheckResponse.SERVING)
    assert main(["--target", health_server.target]) == 0
    health_server.set(health_pb2.HealthCheckResponse.NOT_SERVING)  # what the server reports during graceful shutdown
    assert main(["--target", health_server.target]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "NOT_SERVING" in err and health_server.target in err


def test_unknown_service_exits_1(health_server: HealthServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--target", health_server.target, "--service", "no.such.Service"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_closed_port_exits_1_fast(capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    assert main(["--target", f"127.0.0.1:{_closed_port()}", "--timeout", "5"]) == 1
    assert time.monotonic() - start < 2.0  # refused at once, not after the timeout
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "UNAVAILABLE" in err


def test_module_entry_point_reads_server_port(health_server: HealthServer) -> None:
    """The exact HEALTHCHECK command, with no flags: the target comes from TUNESERVE_SERVER__PORT."""
    health_server.set(health_pb2.HealthCheckResponse.SERVING)
    env = {**os.environ, "TUNESERVE_SERVER__PORT": str(health_server.port)}
    run = subprocess.run(
        [sys.executable, "-m", "tuneserve.healthcheck"], env=env, capture_output=True, text=True, timeout=30
    )
    assert (run.returncode, run.stderr) == (0, "")
    health_server.set(health_pb2.HealthCheckResponse.NOT_SERVING)
    run = subprocess.run(
        [sys.executable, "-m", "tuneserve.healthcheck"], env=env, capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 1
    assert len(run.stderr.splitlines()) == 1 and "NOT_SERVING" in run.stderr
