"""Transport security and credentials of the client: TLS / mutual TLS channel credentials and the bearer token.

    AsyncClient(target, tls=True)                                  # server certificate checked against system roots
    AsyncClient(target, root_certificates="ca.pem")                # ... against this CA (implies tls)
    AsyncClient(target, root_certificates="ca.pem", client_cert="me.pem", client_key="me.key")   # mutual TLS
    AsyncClient(target, token="...")                               # `authorization: Bearer ...` on every call

A certificate or key is PEM bytes, or the path of a PEM file (read once, when the client is made).
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Union

import grpc

PemSource = Union[bytes, str, "PathLike[str]"]


@dataclass(frozen=True)
class Security:
    """What `AsyncClient` needs to open its channel: PEM bytes already read, and the auth metadata."""

    tls: bool = False
    root_certificates: bytes | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None
    token: str | None = None

    @classmethod
    def from_options(
        cls,
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: PemSource | None = None,
        client_cert: PemSource | None = None,
        client_key: PemSource | None = None,
    ) -> Security:
        """Validate the client's security options and read its PEM files; raises ValueError or OSError."""
        if (client_cert is None) != (client_key is None):
            raise ValueError("client_cert and client_key go together (mutual TLS needs both)")
        if token is not None:
            token = token.strip()
            # NOTE: gRPC metadata values are printable ASCII; anything else would fail deep inside the call
            if not token or not (token.isascii() and token.isprintable()) or " " in token:
                raise ValueError("token must be non-empty printable ASCII without spaces")
        root = _read_pem(root_certificates, "root certificates")
        cert, key = _read_pem(client_cert, "client certificate"), _read_pem(client_key, "client key")
        tls = tls or root is not None or cert is not None
        return cls(tls=tls, root_certificates=root, client_cert=cert, client_key=key, token=token)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates, private_key=self.client_key, certificate_chain=self.client_cert
        )


def _read_pem(source: PemSource | None, what: str) -> bytes | None:
    if source is None or isinstance(source, bytes):
        return source
    path = Path(source)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise OSError(f"cannot read the {what} {str(path)!r}: {exc.strerror or exc}") from None
