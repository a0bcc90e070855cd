"""store.sweep: directories no metadata record names go at start-up (logged), recorded ones stay, and on a shared
database only orphans older than the grace period go."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.store import records
from tuneserve.store import ArtifactStore, MetadataStore, SQLiteMetadataStore
from tuneserve.store.sweep import sweep_orphans


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MetadataStore]:
    store = SQLiteMetadataStore(tmp_path / "tuneserve.db")
    await store.open()
    yield store
    await store.close()


def directory(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "file").write_text("x")
    return path


async def test_orphans_are_removed_and_logged_and_recorded_directories_stay(
    store: MetadataStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    artifacts = ArtifactStore(tmp_path / "data")
    await store.add_dataset(records.dataset(1))
    await store.add_model(records.model(1))
    await store.add_model_version("model-1", "job-1", records.T0)  # TRAINING: its job completes it
    kept = [directory(artifacts.dataset_dir("ds-1")), directory(artifacts.version_dir("model-1", 1))]
    orphans = [
        directory(artifacts.dataset_dir("ds-2")),  # published, never recorded
        directory(artifacts.model_dir("model-2")),  # its record deleted, its files not yet
        directory(artifacts.version_dir("model-1", 2)),
    ]
    caplog.set_level(logging.WARNING, "tuneserve.store.sweep")

    removed = await sweep_orphans(store, artifacts, min_age_seconds=0)

    assert sorted(removed) == sorted(orphans)
    assert all(path.exists() for path in kept) and not any(path.exists() for path in orphans)
    for path in orphans:
        assert f"removed {path}: a " in caplog.text
    assert list((artifacts.root / "tmp").iterdir()) == []


async def test_on_a_shared_database_only_old_orphans_go(store: MetadataStore, tmp_path: Path) -> None:
    artifacts = ArtifactStore(tmp_path / "data")
    young = directory(artifacts.dataset_dir("ds-young"))
    old = directory(artifacts.dataset_dir("ds-old"))
    os.utime(old, (0, os.stat(old).st_mtime - 700))

    assert await sweep_orphans(store, artifacts, min_age_seconds=600) == [old]
    assert young.exists()
