"""Open ONNX Runtime sessions, one per model version, loaded on first use and closed least-recently-used first.

Loading follows MLServer's order: a version is registered as loading, loaded off the event loop, and only then
served; a failed load leaves nothing behind. Concurrent first requests for one version share a single load.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tuneserve.core.registry import ServableVersion
from tuneserve.errors import FailedPrecondition

if TYPE_CHECKING:
    from tuneserve.engines.runtime import Runtime

log = logging.getLogger(__name__)

Key = tuple[str, int]
Loader = Callable[[Path], "Runtime"]


class ModelCache:
    def __init__(self, loader: Loader, max_loaded: int) -> None:
        self._loader = loader
        self._max_loaded = max(1, max_loaded)
        self._loaded: OrderedDict[Key, Runtime] = OrderedDict()
        self._loading: dict[Key, asyncio.Future[Runtime]] = {}

    async def get(self, servable: ServableVersion) -> Runtime:
        key = (servable.model.id, servable.version.version)
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        if key not in self._loading:
            self._loading[key] = asyncio.ensure_future(self._load(key, servable.path))
        return await asyncio.shield(self._loading[key])

    async def _load(self, key: Key, path: Path) -> Runtime:
        try:
            runtime = await asyncio.to_thread(self._loader, path)
        except Exception as exc:
            log.exception("loading %s/%s failed", *key)
            raise FailedPrecondition(f"model {key[0]!r} version {key[1]} could not be loaded: {exc}") from exc
        finally:
            self._loading.pop(key, None)
        self._loaded[key] = runtime
        while len(self._loaded) > self._max_loaded:
            evicted, old = self._loaded.popitem(last=False)
            log.info("unloading %s/%s (least recently used)", *evicted)
            old.close()
        return runtime

    def loaded(self, model_id: str, version: int) -> Runtime | None:
        return self._loaded.get((model_id, version))

    async def unload_model(self, model_id: str) -> None:
        for key in [k for k in self._loaded if k[0] == model_id]:
            self._loaded.pop(key).close()

    def close(self) -> None:
        for runtime in self._loaded.values():
            runtime.close()
        self._loaded.clear()
