"""Version numbers on a shared database: two servers (two store instances on one SQLite file or one PostgreSQL
database) adding versions of one model at the same time each get their own number, the numbers run 1..n without a
gap, and no server's version overwrites another's."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tuneserve.core.registry import ModelRegistry
from tuneserve.settings import StorageSettings
from tuneserve.store import ArtifactStore, metadata_store
from tuneserve.types import ModelVersionRecord, VersionState

CALLS = 24


async def test_concurrent_add_version_from_two_servers(database_url: str, tmp_path: Path) -> None:
    stores = [metadata_store(StorageSettings(database_url=database_url)) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        artifacts = ArtifactStore(tmp_path / "artifacts")
        registries = [ModelRegistry(store, artifacts) for store in stores]
        model = await registries[0].create("news", "tiny-bert", ["a", "b"], "text")

        async def add(n: int) -> ModelVersionRecord:
            registry = registries[n % 2]
            # NOTE: each call reads the model first, as FineTune does: every reader sees the same versions
            return await registry.add_version(await registry.get(model.id), f"job-{n}")

        added = await asyncio.gather(*[add(n) for n in range(CALLS)])

        assert sorted(v.version for v in added) == list(range(1, CALLS + 1))  # distinct and gap-free
        stored = (await registries[1].get(model.id)).versions
        assert [v.version for v in stored] == list(range(1, CALLS + 1))
        # each caller's record is the one stored under its number: none was overwritten by another's
        assert {(v.version, v.job_id) for v in stored} == {(v.version, v.job_id) for v in added}
        assert all(v.state is VersionState.TRAINING and v.model_id == model.id for v in stored)
    finally:
        for store in stores:
            await store.close()


async def test_add_version_numbers_each_model_separately(database_url: str, tmp_path: Path) -> None:
    store = metadata_store(StorageSettings(database_url=database_url))
    await store.open()
    try:
        registry = ModelRegistry(store, ArtifactStore(tmp_path / "artifacts"))
        first = await registry.create("a", "tiny-bert", ["x", "y"], "text")
        second = await registry.create("b", "tiny-bert", ["x", "y"], "text")
        numbers = [(await registry.add_version(m, "job")).version for m in (first, first, second, first)]
        assert numbers == [1, 2, 1, 3]
        await registry.mark_failed(first.id, 3)
        # a FAILED version keeps its number: the next one is 4, never a reuse of 3
        assert (await registry.add_version(first, "job-next")).version == 4
    finally:
        await store.close()
