"""The one place a request's version reference (model id + version number | alias | latest, + variant) becomes the
version that serves it. Predict, PredictStream, the Open Inference Protocol and Evaluate all call `resolve`.

The hot-swap rule: when what an alias names moves (a new version becomes READY, so `latest` moves; SetModelAlias),
requests keep going to the version they were served by while the new one loads and warms up in the background; the
first request after that switches to it, and the old version is unloaded (it closes once its in-flight requests
finish). Load the new before unloading the old, as MLServer's registry does: no request fails or waits for a load
during the swap. With nothing warm to fall back on (first request, old version evicted), the request loads the target
itself. An explicit version number is served as named.

The variant is checked here, once. Loads go through `lease`/`load`, which record a version whose files fail their
checksum check as corrupt in the registry (the cache reports it by raising `CorruptVersion`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tuneserve.core.registry import LATEST, ModelRegistry, ServableVersion
from tuneserve.core.serving.cache import CorruptVersion, LoadedModel, ModelCache, ModelKey
from tuneserve.errors import InvalidArgument, TuneServeError
from tuneserve.types import ModelRecord

log = logging.getLogger(__name__)

RouteKey = tuple[str, str, str]   # model_id, alias, variant


@dataclass(frozen=True)
class VersionRef:
    """What a request names: `alias` when set, else `version` (0 = latest READY); `variant` "" = fp32."""

    model_id: str
    version: int = 0
    alias: str = ""
    variant: str = ""


@dataclass(frozen=True)
class Target:
    """A resolved reference: the version that serves it, and the variant (checked)."""

    servable: ServableVersion
    variant: str

    @property
    def model(self) -> ModelRecord:
        return self.servable.model

    @property
    def version(self) -> int:
        return self.servable.version.version


class VersionResolver:
    def __init__(self, registry: ModelRegistry, cache: ModelCache) -> None:
        self._registry = registry
        self._cache = cache
        self._routes: dict[RouteKey, int] = {}          # the version each alias is served by now
        self._preparing: dict[ModelKey, asyncio.Future[LoadedModel]] = {}
        self._broken: set[ModelKey] = set()             # background loads that failed: requests load them directly

    async def resolve(self, ref: VersionRef) -> Target:
        """The version to serve `ref` with now, by the hot-swap rule (raises when it cannot be served)."""
        if not ref.model_id:
            raise InvalidArgument("model_id is required")
        if ref.version < 0:
            raise InvalidArgument("version must be >= 0 (0 = latest READY version)")
        model = await self._registry.snapshot(ref.model_id)
        variant = ref.variant or "fp32"
        if ref.alias or ref.version == 0:
            return Target(self._route(model, ref.alias or LATEST, variant), variant)
        return self._checked(self._registry.servable_of(model, ref.version), variant)

    async def named(self, ref: VersionRef) -> Target:
        """The version `ref` names in the catalog now, without the hot-swap rule (LoadModel opens exactly that)."""
        if ref.version < 0:
            raise InvalidArgument("version must be >= 0 (0 = latest READY version)")
        servable = await self._registry.servable(ref.model_id, ref.version, ref.alias)
        return self._checked(servable, ref.variant or "fp32")

    @contextlib.asynccontextmanager
    async def lease(self, target: Target) -> AsyncIterator[LoadedModel]:
        """Use the target's loaded model (loading it if needed) for the block."""
        async with self._recording_corruption(), self._cache.lease(target.servable, target.variant) as loaded:
            yield loaded

    async def load(self, target: Target) -> LoadedModel:
        """Load (and warm up) the target now, without a lease."""
        async with self._recording_corruption():
            return await self._cache.load(target.servable, target.variant)

    # -- catalog listeners (wired in server.py) ---------------------------------------------------------------------

    async def refresh(self, model_id: str) -> None:
        """A model changed: start loading the versions its served aliases now point at."""
        keys = [key for key in self._routes if key[0] == model_id]
        if not keys:
            return
        model = await self._registry.snapshot(model_id)
        for _, alias, variant in keys:
            try:
                self._route(model, alias, variant)
            except TuneServeError as exc:  # the alias was removed, its variant is not served...: requests will say
                log.info("alias %s of %s: %s", alias, model_id, exc.message)

    async def forget(self, model_id: str) -> None:
        """A model was deleted."""
        self._routes = {key: v for key, v in self._routes.items() if key[0] != model_id}
        self._broken = {key for key in self._broken if key.model_id != model_id}
        for key in [k for k in self._preparing if k.model_id == model_id]:
            self._preparing.pop(key).cancel()

    # -- the hot-swap rule ------------------------------------------------------------------------------------------

    def _route(self, model: ModelRecord, alias: str, variant: str) -> ServableVersion:
        target = self._checked(self._registry.servable_of(model, 0, alias), variant).servable
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

    def _checked(self, servable: ServableVersion, variant: str) -> Target:
        self._registry.check_variant(servable, variant)
        return Target(servable, variant)

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
        future = asyncio.ensure_future(self.load(Target(target, variant)))
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

    @contextlib.asynccontextmanager
    async def _recording_corruption(self) -> AsyncIterator[None]:
        try:
            yield
        except CorruptVersion as exc:
            try:
                await self._registry.mark_corrupt(exc.model_id, exc.version, exc.problem)
            except Exception:  # NOTE: the request still gets the real reason
                log.exception("recording %s/%d as corrupt failed", exc.model_id, exc.version)
            raise
