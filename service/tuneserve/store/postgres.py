"""The shared metadata backend: PostgreSQL through psycopg 3's asyncio connections, for several serving replicas.

A small pool of autocommit connections (one statement = one transaction; `_atomic` opens an explicit one). A lost
connection is never fatal: the statement fails with `Unavailable` (UNAVAILABLE to clients, who retry), the pool is
emptied, and the next statement reconnects; while connecting keeps failing, statements fail fast for a backoff that
doubles up to a few seconds instead of each waiting on a dead server. `ping()` always tries for real: the health
watch (store/watch.py) uses it to report NOT_SERVING and back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from tuneserve.errors import Unavailable
from tuneserve.store.metadata import ADDED_COLUMNS, MetadataStore, Row, Statement, schema_statements

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key held while the schema is created or upgraded, so replicas starting together take turns.
SCHEMA_LOCK = 0x7475_6E65  # "tune"
MAX_BACKOFF_SECONDS = 5.0


class PostgresMetadataStore(MetadataStore):
    shared = True

    def __init__(self, url: str, *, pool_size: int = 4, connect_timeout: int = 5) -> None:
        self._params = conninfo_to_dict(url)
        timeout = {} if "connect_timeout" in self._params else {"connect_timeout": connect_timeout}
        self._conninfo = make_conninfo(url, **timeout)
        self._pool_size = pool_size
        self._idle: list[psycopg.AsyncConnection[Row]] = []
        self._slots: asyncio.Semaphore | None = None
        self._retry_at = 0.0  # monotonic time before which a new connection is not even tried
        self._backoff = 0.0
        self._last_error = ""

    def describe(self) -> str:
        p = self._params
        user = f"{p['user']}@" if p.get("user") else ""
        port = f":{p['port']}" if p.get("port") else ""
        return f"postgresql://{user}{p.get('host', 'localhost')}{port}/{p.get('dbname', '')}"

    async def open(self) -> None:
        self._slots = asyncio.Semaphore(self._pool_size)
        async with self._connection(fail_fast=False) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            for statement in schema_statements("DOUBLE PRECISION", "BIGINT"):
                await conn.execute(statement)
            for table, columns in ADDED_COLUMNS.items():
                for name, declaration in columns:
                    await conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {declaration}")

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    async def ping(self) -> None:
        async with self._connection(fail_fast=False) as conn:
            await conn.execute("SELECT 1")

    async def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        async with self._connection() as conn:
            await conn.execute(_dialect(sql), params)

    async def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        # NOTE: a pooled connection may have died while idle (a database restart); a read is safe to run again on a
        # fresh one, a write is not (it may have committed before the connection broke).
        attempts = 2 if sql.lstrip().upper().startswith("SELECT") else 1
        for attempt in range(attempts):
            try:
                async with self._connection() as conn:
                    cursor = await conn.execute(_dialect(sql), params)
                    return await cursor.fetchall()
            except Unavailable:
                if attempt + 1 == attempts:
                    raise
        raise AssertionError("unreachable")

    async def _atomic(self, statements: Sequence[Statement]) -> None:
        async with self._connection() as conn, conn.transaction():
            for sql, params in statements:
                await conn.execute(_dialect(sql), params)

    @contextlib.asynccontextmanager
    async def _connection(self, fail_fast: bool = True) -> AsyncIterator[psycopg.AsyncConnection[Row]]:
        if self._slots is None:
            raise RuntimeError("MetadataStore is not open")
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._connect(fail_fast)
            try:
                yield conn
            except psycopg.OperationalError as exc:
                await self._discard(conn)
                await self.close()  # the others were most likely cut off by the same outage
                raise self._unavailable(_first_line(exc)) from None
            except BaseException:
                if conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
                    await self._discard(conn)
                else:
                    self._idle.append(conn)
                raise
            else:
                self._idle.append(conn)

    async def _connect(self, fail_fast: bool) -> psycopg.AsyncConnection[Row]:
        if fail_fast and time.monotonic() < self._retry_at:
            raise self._unavailable(self._last_error)
        try:
            conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True, row_factory=dict_row)
        except psycopg.OperationalError as exc:
            self._backoff = min(max(2 * self._backoff, 0.25), MAX_BACKOFF_SECONDS)
            self._retry_at = time.monotonic() + self._backoff
            self._last_error = _first_line(exc)
            raise self._unavailable(self._last_error) from None
        self._backoff, self._retry_at = 0.0, 0.0
        return conn

    def _unavailable(self, reason: str) -> Unavailable:
        return Unavailable(f"the metadata database {self.describe()} is unreachable ({reason}); retry shortly")

    async def _discard(self, conn: psycopg.AsyncConnection[Row]) -> None:
        with contextlib.suppress(Exception):
            await conn.close()


def _dialect(sql: str) -> str:
    # NOTE: the shared SQL uses `?`; psycopg's placeholder is `%s`. None of it contains a literal `?` or `%`.
    return sql.replace("?", "%s")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
