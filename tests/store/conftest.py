"""Store fixtures: a real PostgreSQL server for the session (skipped with the reason when its binaries are missing),
and `backend`, which runs a test once on SQLite and once on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import PostgresServer, find_binaries, running_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if find_binaries() is None:
        pytest.skip("PostgreSQL is not installed (no initdb/postgres on PATH or in /usr/lib/postgresql/*/bin); "
                    "apt-get install postgresql")
    with running_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty metadata database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/tuneserve.db"  # an absolute path: sqlite:////tmp/...
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()
