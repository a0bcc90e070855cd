"""The client's security options are checked before any call: unreadable files and inconsistent options are refused
at once. (Calls over TLS and with tokens, against a real server: tests/grpc.)"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tuneserve_client import AsyncClient, Client


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"client_cert": b"-----BEGIN CERTIFICATE-----"}, ValueError, "client_cert and client_key go together"),
        ({"client_key": b"-----BEGIN PRIVATE KEY-----"}, ValueError, "client_cert and client_key go together"),
        ({"token": ""}, ValueError, "token must be non-empty"),
        ({"token": "two words"}, ValueError, "printable ASCII without spaces"),
        ({"token": "naïve-token"}, ValueError, "printable ASCII"),
        ({"root_certificates": "/nonexistent/ca.pem"}, OSError, "cannot read the root certificates"),
    ],
)
def test_bad_options_fail_before_any_call(options: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Client("localhost:1", **options)  # type: ignore[arg-type]


async def test_tls_options_cannot_apply_to_an_injected_channel(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    channel = grpc.aio.insecure_channel("localhost:1")
    try:
        with pytest.raises(ValueError, match="either channel or TLS options"):
            AsyncClient(channel=channel, root_certificates=ca)
    finally:
        await channel.close()
