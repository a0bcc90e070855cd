"""The embedded metadata backend: one SQLite file, every statement on one dedicated thread (one connection, WAL
journal), so the event loop never blocks on the database and writes are serialised without extra locking.

A full disk ("database or disk is full") raises `DiskFull` naming the file, and a write lock held too long by another
connection ("database is locked", after SQLite's 5 s busy timeout) raises `Unavailable`: both are outages the core
rides out (it retries or reports them), not bugs. Reads go on while the disk is full.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tuneserve.errors import DiskFull, Unavailable
from tuneserve.store.metadata import ADDED_COLUMNS, MetadataStore, Row, Statement, schema_statements

T = TypeVar("T")
# SQLite's primary result codes (the sqlite3 module has them, typeshed does not)
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL = 5, 6, 13


class SQLiteMetadataStore(MetadataStore):
    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    def describe(self) -> str:
        return f"sqlite:///{self._path}"

    async def open(self) -> None:
        def _open() -> None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            # NOTE: the schema and its upgrade in one write transaction: servers opening one file at once would
            # otherwise both find a column missing and both add it ("duplicate column name").
            with conn:  # commits, or rolls back on an exception
                conn.execute("BEGIN IMMEDIATE")
                for statement in schema_statements("REAL", "INTEGER"):
                    conn.execute(statement)
                _add_columns(conn)
            self._conn = conn

        await self._run(_open)

    async def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run(_close)
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary result code
            if code == SQLITE_FULL:
                raise DiskFull(
                    f"the disk holding the metadata database {self._path} is full ({exc}); free space on that volume "
                    "and retry"
                ) from exc
            if code in (SQLITE_BUSY, SQLITE_LOCKED):
                raise Unavailable(
                    f"the metadata database {self._path} is busy ({exc}): another connection holds its write lock; "
                    "retry shortly"
                ) from exc
            raise

    async def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        await self._run(lambda: self._db.execute(sql, params))

    async def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        return await self._run(lambda: self._db.execute(sql, params).fetchall())

    async def _atomic(self, statements: Sequence[Statement]) -> None:
        def _transaction() -> None:
            with self._db:  # commits, or rolls back on an exception
                self._db.execute("BEGIN")
                for sql, params in statements:
                    self._db.execute(sql, params)

        await self._run(_transaction)

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("MetadataStore is not open")
        return self._conn


def _enable_wal(conn: sqlite3.Connection, wait_seconds: float = 5.0) -> None:
    # NOTE: switching a new file to WAL needs it to itself, and SQLite answers "database is locked" at once (no busy
    # handler) while another connection holds it: servers opening one new file together retry for a few seconds.
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _add_columns(conn: sqlite3.Connection) -> None:
    for table, columns in ADDED_COLUMNS.items():
        present = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, declaration in columns:
            if name not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")
