"""The SQLite backend on a real full tmpfs: a write answers DiskFull naming the database file, reads go on, and
writes work again once space is freed; a write lock held elsewhere past the busy timeout is Unavailable."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.integration.disk import empty_wal, fill, holding_writes, tmpfs
from tests.store import records
from tuneserve.errors import DiskFull, Unavailable
from tuneserve.store import SQLiteMetadataStore


async def test_a_full_disk_is_disk_full_naming_the_database_and_reads_go_on(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "volume", "4m") as volume:
        path = volume / "tuneserve.db"
        store = SQLiteMetadataStore(path)
        await store.open()
        try:
            await store.add_dataset(records.dataset(1))
            empty_wal(path)
            filler = fill(volume)
            with pytest.raises(DiskFull, match=rf"the disk holding the metadata database {path} is full \(database "
                               r"or disk is full\); free space on that volume and retry"):
                await store.add_dataset(records.dataset(2))
            assert await store.dataset_ids() == {"ds-1"}
            filler.unlink()
            await store.add_dataset(records.dataset(2))
            assert await store.dataset_ids() == {"ds-1", "ds-2"}
        finally:
            await store.close()


async def test_a_write_lock_held_elsewhere_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: connect(*a, **{**k, "timeout": 0.2}))
    store = SQLiteMetadataStore(tmp_path / "tuneserve.db")
    await store.open()
    try:
        with holding_writes(tmp_path / "tuneserve.db"):
            with pytest.raises(Unavailable, match="is busy"):
                await store.add_dataset(records.dataset(1))
            assert await store.dataset_ids() == set()
        await asyncio.wait_for(store.add_dataset(records.dataset(1)), 10)
    finally:
        await store.close()
