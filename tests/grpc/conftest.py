"""Fixtures for the transport tests: certificates made on the fly, bearer tokens, and servers that use them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.certs import Pki, make_pki
from tests.conftest import ServerThread, make_settings

ADMIN_TOKEN = "admin-" + "a" * 26
PREDICT_TOKEN = "predict-" + "p" * 24
TOKENS = {ADMIN_TOKEN: "admin", PREDICT_TOKEN: "predict"}

StartServer = Callable[..., ServerThread]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """start_server(tls_cert_file=..., tokens=...) -> a started server with those `security` settings."""
    started: list[ServerThread] = []

    def start(**security: object) -> ServerThread:
        settings = make_settings(tmp_path / f"data{len(started)}", tmp_path)
        for name, value in security.items():
            setattr(settings.security, name, value)
        thread = ServerThread(settings)
        started.append(thread)
        return thread.start()

    yield start
    for thread in started:
        thread.close()
