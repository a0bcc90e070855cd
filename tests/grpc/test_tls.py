"""TLS and mutual TLS with certificates made on the fly, through a real server, the real client and the CLI; and
security settings the server refuses at start-up with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.certs import Pki
from tests.conftest import ServerThread
from tests.grpc.conftest import ADMIN_TOKEN, PREDICT_TOKEN, TOKENS, StartServer
from tuneserve.errors import ConfigError
from tuneserve.server import main as serve_main
from tuneserve_client import Client, Unauthenticated, Unavailable
from tuneserve_client.cli.main import main as cli_main


@pytest.fixture
def tls_server(start_server: StartServer, pki: Pki) -> ServerThread:
    return start_server(tls_cert_file=pki.server_cert, tls_key_file=pki.server_key, tokens=TOKENS)


@pytest.fixture
def mtls_server(start_server: StartServer, pki: Pki) -> ServerThread:
    return start_server(
        tls_cert_file=pki.server_cert, tls_key_file=pki.server_key, tls_client_ca_file=pki.ca, tokens=TOKENS
    )


def test_tls_with_token(tls_server: ServerThread, pki: Pki) -> None:
    with Client(tls_server.target, root_certificates=pki.ca, token=ADMIN_TOKEN) as client:
        assert client.list_datasets().datasets == []
    with Client(tls_server.target, root_certificates=pki.ca.read_bytes()) as client, pytest.raises(Unauthenticated):
        client.list_datasets()


def test_plaintext_client_to_tls_server_is_unavailable(tls_server: ServerThread) -> None:
    with Client(tls_server.target, token=ADMIN_TOKEN, timeout=10) as client, pytest.raises(Unavailable):
        client.list_datasets()


def test_client_that_does_not_trust_the_server_is_unavailable(tls_server: ServerThread, pki: Pki) -> None:
    client = Client(tls_server.target, root_certificates=pki.client_cert, token=ADMIN_TOKEN, timeout=10)
    with client, pytest.raises(Unavailable):
        client.list_datasets()


def test_mutual_tls(mtls_server: ServerThread, pki: Pki) -> None:
    with Client(
        mtls_server.target, root_certificates=pki.ca, client_cert=pki.client_cert, client_key=pki.client_key,
        token=PREDICT_TOKEN,
    ) as client:
        assert client.list_models().models == []
    for cert, key in ((None, None), (pki.rogue_cert, pki.rogue_key)):  # no client certificate, or an untrusted one
        with Client(
            mtls_server.target, root_certificates=pki.ca, client_cert=cert, client_key=key, token=ADMIN_TOKEN,
            timeout=10,
        ) as client, pytest.raises(Unavailable):
            client.list_models()


def test_health_over_tls_needs_no_token(tls_server: ServerThread, pki: Pki) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    with grpc.secure_channel(tls_server.target, credentials) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_cli_security_options(
    mtls_server: ServerThread, pki: Pki, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--target", mtls_server.target, "--json", "--timeout", "10", "--ca-cert", str(pki.ca)]
    mtls = ["--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key)]
    monkeypatch.setenv("TUNESERVE_TOKEN", ADMIN_TOKEN)
    assert cli_main([*base, *mtls, "datasets", "list"]) == 0
    assert json.loads(capsys.readouterr().out)["datasets"] == []
    assert cli_main([*base, *mtls, "--token", PREDICT_TOKEN, "datasets", "list"]) == 1
    assert "error: PERMISSION_DENIED: the predict role may not call" in capsys.readouterr().err
    assert cli_main([*base, "datasets", "list"]) == 1  # no client certificate
    assert "UNAVAILABLE" in capsys.readouterr().err
    assert cli_main([*base, "--client-cert", str(pki.client_cert), "datasets", "list"]) == 2
    assert "client_cert and client_key go together" in capsys.readouterr().err
    assert cli_main([*base, *mtls[:2], "--client-key", "/nonexistent/key.pem", "datasets", "list"]) == 2
    assert "cannot read the client key" in capsys.readouterr().err


# -- refused configurations ---------------------------------------------------------------------------------------

def _bad_configs(pki: Pki, tmp: Path) -> list[tuple[dict[str, object], str]]:
    (tmp / "bad.json").write_text('{"' + ADMIN_TOKEN + '": "admin",}')
    (tmp / "role.yaml").write_text(f"{ADMIN_TOKEN}: root\n")
    (tmp / "list.json").write_text("[]")
    (tmp / "not-pem.pem").write_text("hello")
    return [
        ({"tls_cert_file": pki.server_cert}, "security.tls_key_file is not set"),
        ({"tls_key_file": pki.server_key}, "security.tls_cert_file is not set"),
        ({"tls_cert_file": tmp / "missing.pem", "tls_key_file": pki.server_key}, "cannot read it"),
        ({"tls_cert_file": pki.server_cert, "tls_key_file": pki.client_key}, "cannot load them"),
        ({"tls_cert_file": tmp / "not-pem.pem", "tls_key_file": pki.server_key}, "not a PEM file"),
        ({"tls_client_ca_file": pki.ca}, "needs the server's own certificate"),
        (
            {"tls_cert_file": pki.server_cert, "tls_key_file": pki.server_key, "tls_client_ca_file": tmp / "x.pem"},
            "tls_client_ca_file .*cannot read it",
        ),
        ({"tokens_file": tmp / "bad.json"}, r"not valid JSON \(line 1\)"),
        ({"tokens_file": tmp / "role.yaml"}, "token #1 has role 'root'"),
        ({"tokens_file": tmp / "list.json"}, "expected a mapping of token to role"),
        ({"tokens_file": tmp / "missing.json"}, "cannot read it"),
        ({"tokens": {"short": "admin"}}, "shorter than 16 characters"),
        ({"tokens": {ADMIN_TOKEN + " x": "admin"}}, "printable ASCII without spaces"),
    ]


def test_bad_security_settings_fail_at_start(start_server: StartServer, pki: Pki, tmp_path: Path) -> None:
    for security, message in _bad_configs(pki, tmp_path):
        with pytest.raises(ConfigError, match=message) as caught:
            start_server(**security)
        assert ADMIN_TOKEN not in str(caught.value)


def test_serve_reports_a_bad_configuration_in_one_line(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TUNESERVE_SECURITY__TLS_CERT_FILE", str(pki.server_cert))
    assert serve_main(["--port", "0", "--metrics-port", "-1", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == "error: security.tls_cert_file and tls_key_file go together: security.tls_key_file is not set\n"
    monkeypatch.delenv("TUNESERVE_SECURITY__TLS_CERT_FILE")
    monkeypatch.setenv("TUNESERVE_SECURITY__TOKENS", json.dumps({ADMIN_TOKEN: 7}))
    assert serve_main(["--port", "0", "--metrics-port", "-1", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid settings: TUNESERVE_SECURITY__TOKENS:") and err.count("\n") == 1
    assert ADMIN_TOKEN not in err
