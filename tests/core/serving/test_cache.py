"""The model cache with real (numpy) runtimes: shared loads, LRU by count and by memory, and models in use are not
closed under their requests."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.core.fakes import NumpyRuntime
from tuneserve.core.registry import ServableVersion
from tuneserve.core.serving.cache import ModelCache
from tuneserve.errors import FailedPrecondition
from tuneserve.settings import BatchingSettings, InferenceSettings
from tuneserve.types import ModelRecord, ModelVersionRecord, VersionState


class Loader:
    """Builds NumpyRuntimes, recording each load; `gate` holds loads; a path named `broken` fails."""

    def __init__(self, memory_bytes: int = 1000) -> None:
        self.memory_bytes = memory_bytes
        self.loads: list[tuple[str, str]] = []
        self.runtimes: list[NumpyRuntime] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, path: Path, variant: str) -> NumpyRuntime:
        assert self.gate.wait(5)
        self.loads.append((path.name, variant))
        if "broken" in str(path):
            raise OSError("model.onnx is truncated")
        runtime = NumpyRuntime(memory_bytes=self.memory_bytes, variant=variant)
        self.runtimes.append(runtime)
        return runtime


def servable(name: str) -> ServableVersion:
    version = ModelVersionRecord(name, 1, VersionState.READY, "job")
    model = ModelRecord(name, name, "text", "tiny", NumpyRuntime.labels, 0.0, versions=[version])
    return ServableVersion(model, version, Path("/models") / name)


def cache(loader: Loader, **inference: Any) -> ModelCache:
    return ModelCache(loader, InferenceSettings(**inference), BatchingSettings())


async def predict(models: ModelCache, name: str, text: str = "hello") -> None:
    async with models.lease(servable(name)) as loaded:
        await loaded.batcher.submit(loaded.runtime.encode([text]))


async def until(condition, seconds: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_concurrent_first_requests_share_one_load() -> None:
    loader = Loader()
    models = cache(loader)
    loader.gate.clear()
    requests = [asyncio.ensure_future(predict(models, "a")) for _ in range(5)]
    await asyncio.sleep(0.02)
    loader.gate.set()
    await asyncio.gather(*requests)
    assert loader.loads == [("a", "fp32")]
    await models.close()
    assert loader.runtimes[0].closed


async def test_least_recently_used_is_unloaded_beyond_max_loaded_models() -> None:
    loader = Loader()
    models = cache(loader, max_loaded_models=2)
    for name in ("a", "b", "a", "c"):  # b is the least recently used when c arrives
        await predict(models, name)
    await until(lambda: loader.runtimes[1].closed)
    assert [models.is_loaded(n, 1) for n in "abc"] == [True, False, True]
    assert not loader.runtimes[0].closed
    await predict(models, "b")  # loads again on demand
    assert [name for name, _ in loader.loads] == ["a", "b", "c", "b"]
    await models.close()


async def test_least_recently_used_is_unloaded_beyond_max_loaded_bytes() -> None:
    loader = Loader(memory_bytes=1000)
    models = cache(loader, max_loaded_bytes=2500)
    for name in "abc":
        await predict(models, name)
    assert [models.is_loaded(n, 1) for n in "abc"] == [False, True, True]
    big = cache(Loader(memory_bytes=5000), max_loaded_bytes=2500)
    await predict(big, "huge")  # a model over the cap alone is still served
    assert big.is_loaded("huge", 1)
    await asyncio.gather(models.close(), big.close())


async def test_a_model_in_use_is_closed_only_after_its_requests_finish() -> None:
    loader = Loader()
    models = cache(loader)
    await predict(models, "a")
    runtime = loader.runtimes[0]
    runtime.hold()
    in_flight = asyncio.ensure_future(predict(models, "a", "in flight"))
    assert await asyncio.to_thread(runtime.running.wait, 5)
    assert models.unload("a") == 1
    assert not models.is_loaded("a", 1)
    await asyncio.sleep(0.05)
    assert not runtime.closed
    runtime.release()
    await in_flight
    await until(lambda: runtime.closed)
    await predict(models, "a")  # a new session
    assert len(loader.runtimes) == 2 and not loader.runtimes[1].closed
    await models.close()


async def test_a_failed_load_leaves_nothing_behind() -> None:
    loader = Loader()
    models = cache(loader)
    for _ in range(2):  # not cached as failed: the second request tries again
        with pytest.raises(FailedPrecondition, match=r"model 'broken' version 1 \(fp32\) could not be loaded: .*truncated"):
            await predict(models, "broken")
    assert len(loader.loads) == 2 and models.loaded("broken") == []
    await models.close()
