"""Real storage faults for server-process tests (issue 16): a small tmpfs that a test fills up, and a hold on the SQLite
write lock that keeps a server inside a crash window (its files already moved into place, its record not yet written)
until the test SIGKILLs it."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` (e.g. "64m") at `mount_point` (needs root and mount; skips the test otherwise)."""
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """Write a file in `directory` until its filesystem has not one byte left; delete the file to free the space."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for chunk in (1 << 20, 4096, 1):
            while True:
                try:
                    os.write(fd, bytes(chunk))
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


def empty_wal(database: Path) -> None:
    """Checkpoint the SQLite database and truncate its write-ahead log, so that the server's next write must grow the
    log: on a full disk it then fails for certain ("database or disk is full") instead of reusing a log's old frames."""
    with contextlib.closing(sqlite3.connect(database, isolation_level=None, timeout=30)) as conn:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0, "the write-ahead log could not be truncated"


@contextlib.contextmanager
def holding_writes(database: Path) -> Iterator[None]:
    """Hold the SQLite database's write lock: the server's reads go on, its writes wait (then fail "database is
    locked" after SQLite's 5 s busy timeout). Release it before restarting a killed server."""
    conn = sqlite3.connect(database, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
    finally:
        conn.close()  # rolls the empty transaction back
