"""Fixtures for the serving tests: a real registry (SQLite on disk) and model cache over numpy runtimes, wired as
server.py wires them; `Loader` holds a version's load on demand."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.core.fakes import NumpyRuntime
from tuneserve.core.registry import ModelRegistry
from tuneserve.core.serving.cache import ModelCache
from tuneserve.core.serving.inference import InferenceService, PredictParams
from tuneserve.core.serving.resolver import VersionResolver
from tuneserve.metrics import Metrics
from tuneserve.settings import BatchingSettings, InferenceSettings, LimitSettings
from tuneserve.store import ArtifactStore, MetadataStore, SQLiteMetadataStore
from tuneserve.types import ModelRecord


class Loader:
    """NumpyRuntimes keyed by (version, variant); versions in `held` wait until released."""

    def __init__(self) -> None:
        self.loads: list[tuple[int, str]] = []
        self.runtimes: dict[tuple[int, str], NumpyRuntime] = {}
        self.held: dict[int, threading.Event] = {}

    def hold(self, version: int) -> threading.Event:
        self.held[version] = threading.Event()
        return self.held[version]

    def __call__(self, path: Path, variant: str) -> NumpyRuntime:
        version = int(path.name)
        if version in self.held:
            assert self.held[version].wait(5)
        self.loads.append((version, variant))
        self.runtimes[version, variant] = NumpyRuntime(variant=variant)
        return self.runtimes[version, variant]


class World:
    def __init__(self, store: MetadataStore, artifacts: ArtifactStore, loader: Loader) -> None:
        self.store, self.artifacts, self.loader = store, artifacts, loader
        self.registry = ModelRegistry(store, artifacts)
        self.cache = ModelCache(loader, InferenceSettings(), BatchingSettings())
        self.resolver = VersionResolver(self.registry, self.cache)
        self.registry.on_change(self.resolver.refresh)  # as server.py wires them
        self.registry.on_delete(self.resolver.forget)
        self.registry.on_delete(self.cache.unload_model)
        self.inference = InferenceService(
            self.registry, self.cache, self.resolver, LimitSettings(), BatchingSettings(), Metrics(gpu=False)
        )

    async def new_version(self, model: ModelRecord) -> int:
        version = await self.registry.add_version(await self.registry.get(model.id), "job")
        self.artifacts.version_dir(model.id, version.version).mkdir(parents=True)
        await self.registry.mark_ready(model.id, version.version, {"macro_f1": 0.9})
        return version.version

    async def predict(self, model: ModelRecord, **params: object) -> tuple[int, str]:
        result = await self.inference.predict(PredictParams(model.id, ["some text"], **params))  # type: ignore[arg-type]
        return result.version, result.variant


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = SQLiteMetadataStore(tmp_path / "tuneserve.db")
    await store.open()
    world = World(store, ArtifactStore(tmp_path), Loader())
    try:
        yield world
    finally:
        await world.cache.close()
        await store.close()


@pytest.fixture
async def model(world: World) -> ModelRecord:
    model = await world.registry.create("topics", "tiny", NumpyRuntime.labels, "text")
    await world.new_version(model)
    return model


async def until(condition, seconds: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")
