"""Which version answers requests that name an alias (`latest`, or a user alias such as `production`) rather than a
version number, and the hot swap when that alias moves.

When an alias moves (a new version becomes READY, SetModelAlias), requests keep going to the version they were
served by while the new one loads and warms up in the background; the first request after that switches to it, and
the old version is unloaded (it closes once its in-flight requests finish). Load the new before unloading the old,
as MLServer's registry does: no request fails or waits for a load during the swap. With nothing warm to fall back on
(first request, old version evicted), the request loads the target itself.
"""

from __future__ import annotations

import asyncio
import logging

from tuneserve.core.registry import ModelRegistry, ServableVersion
from tuneserve.core.serving.cache import LoadedModel, ModelCache, ModelKey
from tuneserve.errors import TuneServeError
from tuneserve.types import ModelRecord

log = logging.getLogger(__name__)

RouteKey = tuple[str, str, str]   # model_id, alias, variant


class VersionRouter:
    def __init__(self, registry: ModelRegistry, cache: ModelCache) -> None:
        self._registry = registry
        self._cache = cache
        self._routes: dict[RouteKey, int] = {}          # the version each alias is served by now
        self._preparing: dict[ModelKey, asyncio.Future[LoadedModel]] = {}
        self._broken: set[ModelKey] = set()             # background loads that failed: requests load them directly

    def route(self, model: ModelRecord, alias: str, variant: str) -> ServableVersion:
        """The version to serve `alias` with now (raises when the alias or its variant cannot be served)."""
        target = self._registry.servable_of(model, 0, alias)
        self._registry.check_variant(target, variant)
        key, number = (model.id, alias, variant), target.version.version
        current = self._routes.get(key)
        if (
            current is None
            or current == number
            or self._cache.is_loaded(model.id, number, variant)
            or not self._cache.is_loaded(model.id, current, variant)
            or ModelKey(model.id, number, variant) in self._broken
        ):
            self._switch(key, number)
            return target
        self._prepare(target, variant)
        return self._registry.servable_of(model, current)

    async def refresh(self, model_id: str) -> None:
        """Registry change listener: start loading the versions the model's served aliases now point at."""
        keys = [key for key in self._routes if key[0] == model_id]
        if not keys:
            return
        model = await self._registry.snapshot(model_id)
        for _, alias, variant in keys:
            try:
                self.route(model, alias, variant)
            except TuneServeError as exc:  # the alias was removed, its variant is not served...: requests will say
                log.info("alias %s of %s: %s", alias, model_id, exc.message)

    async def forget(self, model_id: str) -> None:
        """Registry delete listener."""
        self._routes = {key: v for key, v in self._routes.items() if key[0] != model_id}
        self._broken = {key for key in self._broken if key.model_id != model_id}
        for key in [k for k in self._preparing if k.model_id == model_id]:
            self._preparing.pop(key).cancel()

    def _switch(self, key: RouteKey, number: int) -> None:
        old = self._routes.get(key)
        self._routes[key] = number
        if old is None or old == number:
            return
        model_id, alias, variant = key
        log.info("%s of model %s (%s) now served by version %d (was %d)", alias, model_id, variant, number, old)
        if old not in {v for (m, _, var), v in self._routes.items() if m == model_id and var == variant}:
            self._cache.retire(ModelKey(model_id, old, variant), f"{alias} moved to version {number}")

    def _prepare(self, target: ServableVersion, variant: str) -> None:
        key = ModelKey(target.model.id, target.version.version, variant)
        if key in self._preparing:
            return
        log.info("loading %s before switching to it", key)
        future = asyncio.ensure_future(self._cache.load(target, variant))
        self._preparing[key] = future
        future.add_done_callback(lambda done: self._prepared(key, done))

    def _prepared(self, key: ModelKey, done: asyncio.Future[LoadedModel]) -> None:
        self._preparing.pop(key, None)
        if done.cancelled():
            return
        if done.exception() is not None:
            # NOTE: serving a stale version silently would hide the failure: requests now load it themselves and
            # get the load error (FAILED_PRECONDITION), as they would without a swap.
            log.error("preparing %s failed: %s", key, done.exception())
            self._broken.add(key)
