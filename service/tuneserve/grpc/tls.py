"""TLS and mutual TLS for the gRPC port, from `security.tls_*` settings.

The files are read and checked once at start-up with the standard `ssl` module (a key that does not match its
certificate, an unreadable file or a file that is not PEM fails here with a `ConfigError` naming the setting),
then handed to `grpc.ssl_server_credentials`. With `tls_client_ca_file` every client must present a certificate
signed by that CA (gRPC answers the handshake of one that does not with an error; the call never starts).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import NoReturn

import grpc

from tuneserve.errors import ConfigError
from tuneserve.settings import SecuritySettings


def server_credentials(security: SecuritySettings) -> grpc.ServerCredentials | None:
    """Credentials for `add_secure_port`, or None for a plaintext port (no certificate configured)."""
    cert, key, client_ca = security.tls_cert_file, security.tls_key_file, security.tls_client_ca_file
    if cert is None and key is None:
        if client_ca is not None:
            raise ConfigError(
                "security.tls_client_ca_file is set but security.tls_cert_file and tls_key_file are not: mutual TLS "
                "needs the server's own certificate and key too"
            )
        return None
    if cert is None or key is None:
        missing = "tls_key_file" if key is None else "tls_cert_file"
        raise ConfigError(f"security.tls_cert_file and tls_key_file go together: security.{missing} is not set")
    chain, private_key = _read(cert, "tls_cert_file"), _read(key, "tls_key_file")
    _check_pair(cert, key)
    ca = None
    if client_ca is not None:
        ca = _read(client_ca, "tls_client_ca_file")
        _check_ca(client_ca)
    return grpc.ssl_server_credentials([(private_key, chain)], root_certificates=ca, require_client_auth=ca is not None)


def describe(security: SecuritySettings) -> str:
    """How the port is protected, for the start-up log line."""
    if security.tls_cert_file is None:
        return "plaintext"
    return "mutual TLS" if security.tls_client_ca_file is not None else "TLS"


def _read(path: Path, setting: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"security.{setting} {path}: cannot read it ({exc.strerror or exc})") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"security.{setting} {path}: not a PEM file (no -----BEGIN line)")
    return data


def _check_pair(cert: Path, key: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"security.tls_cert_file {cert} and tls_key_file {key}: cannot load them as a certificate and its "
            f"private key ({exc.reason or exc})"
        ) from None


def _check_ca(client_ca: Path) -> None:
    try:
        ssl.create_default_context(cafile=str(client_ca))
    except ssl.SSLError as exc:
        raise ConfigError(
            f"security.tls_client_ca_file {client_ca}: not a PEM CA certificate ({exc.reason or exc})"
        ) from None


def _no_password() -> NoReturn:
    # NOTE: without a callback OpenSSL would prompt on the terminal for an encrypted key's passphrase
    raise ConfigError("security.tls_key_file is encrypted: give the server an unencrypted key (e.g. a mounted Secret)")
