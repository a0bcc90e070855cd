"""A grpc.health.v1 `Check` client for container health checks (the image has no grpc_health_probe binary).

    python -m tuneserve.healthcheck [--target HOST:PORT] [--service NAME] [--timeout SECONDS]

Exits 0 when the server answers SERVING; otherwise exits 1 and writes one line on stderr (the status, or the gRPC
error: UNAVAILABLE for a closed port, NOT_FOUND for an unknown service, DEADLINE_EXCEEDED for a hung server).
The default target is localhost on TUNESERVE_SERVER__PORT (else 50051), the port the server itself reads; a port
given only by `tuneserve serve --port` must be passed with --target.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_PORT = 50051


def check(target: str, service: str = "", timeout: float = 3.0) -> tuple[bool, str]:
    """Ask `target` for the health of `service` ("" = the whole server); returns (serving, what was seen)."""
    # NOTE: a proxy from http_proxy/https_proxy must never sit between a probe and its own container.
    with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            return False, f"{code.name if code else 'ERROR'}: {details}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return response.status == health_pb2.HealthCheckResponse.SERVING, status


def _default_target() -> str:
    return f"localhost:{os.environ.get('TUNESERVE_SERVER__PORT') or DEFAULT_PORT}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tuneserve.healthcheck", description="grpc.health.v1 check: exit 0 when SERVING, else 1."
    )
    parser.add_argument("--target", default=None, help="HOST:PORT (default localhost:$TUNESERVE_SERVER__PORT or 50051)")
    parser.add_argument("--service", default="", help='service name to check (default "": the whole server)')
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer (default 3)")
    args = parser.parse_args(argv)
    target = args.target or _default_target()
    serving, seen = check(target, args.service, args.timeout)
    if not serving:
        print(f"tuneserve healthcheck: {target} service {args.service!r}: {seen}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
